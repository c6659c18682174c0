//! What the daemon reports about its ports besides the metrics endpoint: the counters table it
//! prints at exit, and the log lines of monitor-mode guards and of kernel-side drops.

use super::table::Ports;
use crate::switch::{DropReason, PortId, Switch};

/// Logs, at most once a tick per port, what a monitor-mode guard would have dropped since the
/// last tick: the way to debug a guest's policy before enforcing it, without flooding the log.
pub(super) fn log_monitored(switch: &Switch, seen: &mut [u64]) {
    for (i, last) in seen.iter_mut().enumerate() {
        let id = PortId(i as u16);
        let c = switch.counters(id);
        let total = c.total_monitored();
        if total < *last {
            // A new port in a reused slot: its counters started again.
            *last = 0;
        }
        if total > *last {
            let reasons: Vec<String> = DropReason::ALL
                .iter()
                .filter(|r| c.monitored(**r) > 0)
                .map(|r| format!("{}={}", r.name(), c.monitored(*r)))
                .collect();
            tracing::warn!(
                port = %switch.port_spec(id).name,
                new = total - *last,
                totals = %reasons.join(" "),
                "guard (monitor mode) would have dropped frames"
            );
            *last = total;
        }
    }
}

/// Logs, per port that can tell (taps), the frames the kernel dropped at its ring because the switch had not read
/// them in time (the netdev's `tx_dropped`): loss that the switch's own counters cannot see.
pub(super) fn log_kernel_drops(ports: &Ports, switch: &Switch) {
    let table = ports.table();
    for (i, p) in table.slots.iter().enumerate() {
        let Some(dropped) = p.as_ref().and_then(|p| p.port.kernel_tx_dropped()) else {
            continue;
        };
        let port = &switch.port_spec(PortId(i as u16)).name;
        match dropped {
            Ok(0) => {}
            Ok(dropped) => tracing::warn!(%port, dropped,
                "the kernel dropped frames at the tap's ring before the switch read them"),
            Err(e) => tracing::debug!(%port, error = %e, "cannot read the tap's kernel drops"),
        }
    }
}

/// The per-port counters as a table, one row per port.
pub fn counters_table(switch: &Switch) -> String {
    let mut out = format!(
        "{:<16} {:>10} {:>12} {:>10} {:>12} {:>8} {:>6}  {}\n",
        "PORT", "RX_FRAMES", "RX_BYTES", "TX_FRAMES", "TX_BYTES", "FDB_FULL", "DOWNS", "DROPS"
    );
    for id in switch.present_ports() {
        let c = switch.counters(id);
        out.push_str(&format!(
            "{:<16} {:>10} {:>12} {:>10} {:>12} {:>8} {:>6}  {}\n",
            switch.port_spec(id).name,
            c.rx_frames,
            c.rx_bytes,
            c.tx_frames,
            c.tx_bytes,
            c.fdb_full,
            c.link_downs,
            c.drops_summary()
        ));
    }
    out
}

/// Frames each worker read from each port, one row per worker and port it read from
/// (`sy-worker-N PORT FRAMES`), then from each queue of each port (`queue-N PORT FRAMES`):
/// which workers and queues a port's traffic went through (a multi-queue port's flows spread
/// over several).
pub(super) fn worker_table(ports: &Ports, switch: &Switch) -> String {
    let mut out = String::from("WORKER|QUEUE     PORT             RX_FRAMES\n");
    for id in switch.present_ports() {
        for q in 0..crate::port::MAX_QUEUES {
            let n = ports.queue_rx(id, q);
            if n > 0 {
                let queue = format!("queue-{q}");
                let port = &switch.port_spec(id).name;
                out.push_str(&format!("{queue:<16} {port:<16} {n:>10}\n"));
            }
        }
    }
    for w in 0..ports.workers() {
        for id in switch.present_ports() {
            let n = ports.worker_rx(w, id);
            if n > 0 {
                let worker = format!("sy-worker-{w}");
                let port = &switch.port_spec(id).name;
                out.push_str(&format!("{worker:<16} {port:<16} {n:>10}\n"));
            }
        }
    }
    out
}
