fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Only the protos feed the generated code; without this, any file change in the
    // package (a script, BENCHMARKS.md) would re-run the build script and rebuild the crate.
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-changed=build.rs");
    tonic_prost_build::configure()
        // Keep file payloads as `Bytes` so they move through without copies.
        .bytes(".")
        // Encodes each message into a buffer of its size (see src/proto/codec.rs).
        .codec_path("crate::proto::codec::SizedProstCodec")
        .compile_protos(&["proto/storage.proto", "proto/admin.proto"], &["proto"])?;
    Ok(())
}
