//! Deterministic simulations of many memberlist nodes (virtual clock, simulated network).

use std::time::Duration;

use wesher::membership::sim::{Sim, SimConfig};
use wesher::membership::{Event, MemberState, Timing};

fn cluster(n: usize, seed: u64) -> Sim {
    let mut sim = Sim::new(SimConfig::new(Timing::wan(), seed));
    for i in 0..n {
        sim.add_node(&format!("node{i}"), format!("meta{i}").into_bytes());
    }
    sim
}

/// Every node joins through node 0; returns the virtual time until all see all alive.
fn join_all(sim: &mut Sim, limit: Duration) -> Duration {
    for i in 1..sim.len() {
        sim.join(i, &[0]);
    }
    sim.run_until(limit, |s| s.converged())
        .expect("cluster did not converge")
}

#[test]
fn fifty_nodes_join_through_one_seed_and_converge() {
    let mut sim = cluster(50, 1);
    let took = join_all(&mut sim, Duration::from_secs(60));
    println!("50 nodes converged in {took:?}");
    for i in 1..sim.len() {
        let ok = sim
            .events(i)
            .iter()
            .any(|(_, e)| matches!(e, Event::JoinResult { result: Ok(n), .. } if *n >= 1));
        assert!(ok, "node {i} has no successful JoinResult");
        let joins = sim
            .events(i)
            .iter()
            .filter(|(_, e)| matches!(e, Event::Join(_)))
            .count();
        assert_eq!(joins, 49, "node {i} join events");
    }
    assert!(sim.view(3, 7) == Some(MemberState::Alive));
}
