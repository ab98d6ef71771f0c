//! Ring lookups per second with 10 nodes at the default V, and the balance it gives;
//! beside them, the same keys only hashed (the position of a key), the floor of a lookup.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use tritontube::ring::{DEFAULT_REPLICAS, DEFAULT_VIRTUAL_NODES, Ring};

fn lookups(c: &mut Criterion) {
    let ring = Ring::with_nodes(
        DEFAULT_VIRTUAL_NODES,
        DEFAULT_REPLICAS,
        (0..10).map(|i| format!("127.0.0.1:{}", 8090 + i)),
    );
    eprintln!(
        "10 nodes, V={DEFAULT_VIRTUAL_NODES}: largest share / mean share = {:.3}",
        ring.imbalance()
    );
    let keys: Vec<String> = (0..1024)
        .map(|i| format!("video{}/chunk-0-{:05}.m4s", i % 7, i))
        .collect();
    let mut group = c.benchmark_group("ring");
    group.throughput(Throughput::Elements(keys.len() as u64));
    group.bench_function("owners_10_nodes_default_v", |b| {
        b.iter(|| {
            for key in &keys {
                black_box(ring.owners(black_box(key)));
            }
        })
    });
    // The floor under any lookup with this placement: hashing the key alone.
    group.bench_function("sha256_of_key_reference", |b| {
        b.iter(|| {
            for key in &keys {
                black_box(tritontube::ring::position(black_box(key)));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, lookups);
criterion_main!(benches);
