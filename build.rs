fn main() -> Result<(), Box<dyn std::error::Error>> {
    tonic_prost_build::configure()
        // Keep file payloads as `Bytes` so they move through without copies.
        .bytes(".")
        .compile_protos(&["proto/storage.proto", "proto/admin.proto"], &["proto"])?;
    Ok(())
}
