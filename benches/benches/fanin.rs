//! Cloud fan-in: `OUTPOST_FANIN_SITES` sites (default 8), each with one POS [`Node`]
//! connected over QUIC (mutual TLS, loopback) to one in-process cloud peer
//! ([`Cloud`]). Every POS writes `OUTPOST_FANIN_ORDERS` orders (default 200, one change
//! each, `Durability::Fast`) as fast as it can; a fan-in is the time from the first write
//! until the cloud's `outpost_changes_applied_total` counter has grown by every order.
//!
//! Reference in the same run (`local`): the same orders written into as many local stores,
//! one thread each, with no network: the write cost alone.
//!
//! Each criterion sample is one fan-in (fresh sites and devices every time). A summary line
//! with the medians, their ratio and the peak RSS of the process (VmHWM) is printed at the
//! end.

use std::sync::Mutex;
use std::time::Duration;

use criterion::{Criterion, SamplingMode};
use outpost_transport::FleetCa;
use tokio::runtime::Runtime;

#[allow(dead_code)]
#[path = "support/fanin.rs"]
mod fanin;

use fanin::{env_or, fan_in, local, median, start_cloud, status_kib};

fn bench(c: &mut Criterion) {
    let sites = env_or("OUTPOST_FANIN_SITES", 8).max(1);
    let orders = env_or("OUTPOST_FANIN_ORDERS", 200).max(1);
    let rt = Runtime::new().expect("tokio runtime");
    let cloud_dir = tempfile::tempdir().expect("temporary directory");
    let ca = FleetCa::generate("fanin").expect("generate a fleet CA");
    let cloud = rt.block_on(start_cloud(cloud_dir.path(), &ca, None));

    let cloud_times = Mutex::new(Vec::new());
    let local_times = Mutex::new(Vec::new());
    let mut round = 0u64;
    let mut group = c.benchmark_group(format!("fanin_{sites}x{orders}"));
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(5));
    group.bench_function("cloud", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                round += 1;
                let t = rt
                    .block_on(fan_in(&[&cloud], &ca, round, sites, orders))
                    .applied;
                cloud_times.lock().expect("samples").push(t);
                total += t;
            }
            total
        })
    });
    group.bench_function("local", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let t = local(sites, orders);
                local_times.lock().expect("samples").push(t);
                total += t;
            }
            total
        })
    });
    group.finish();
    rt.block_on(cloud.shutdown()).expect("the cloud shuts down");

    let all = (sites * orders) as f64;
    let through_cloud = all / median(&cloud_times).as_secs_f64();
    let written_locally = all / median(&local_times).as_secs_f64();
    println!(
        "fanin: {sites} sites x {orders} orders: {through_cloud:.0} orders/s through the cloud, \
         {written_locally:.0} orders/s written locally (ratio {:.2}), peak RSS {:.0} MiB",
        written_locally / through_cloud,
        status_kib("self", "VmHWM") as f64 / 1024.0
    );
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
}
