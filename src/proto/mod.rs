//! Generated gRPC code. `storage` and `tritontube` keep the original system's packages.

pub mod codec;

pub mod storage {
    tonic::include_proto!("storage");
}

pub mod admin {
    tonic::include_proto!("tritontube");
}
