//! `SNNC_PROFILE`: the time of each node and region of a run, printed
//! after it (`SNNC_PROFILE=1` for the 16 slowest nodes, `SNNC_PROFILE=N`
//! for the N slowest).

use super::*;

impl Executable {
    /// Prints the nodes that took the most time (`SNNC_PROFILE=1`).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn print_profile(
        &self,
        prof: &[f64],
        regions: &[f64],
        how: &[&str],
        stdp: &[stdp::StdpScratch],
        prepare: f64,
        total: f64,
        results: f64,
    ) {
        let mut rows: Vec<(usize, f64)> = prof.iter().copied().enumerate().filter(|&(_, t)| t > 0.0).collect();
        rows.sort_by(|a, b| b.1.total_cmp(&a.1));
        eprintln!(
            "snnc profile: {:.3} ms in the regions, {:.3} ms converting results, {:.3} ms checking and converting \
             inputs",
            total * 1e3,
            results * 1e3,
            prepare * 1e3
        );
        // `SNNC_PROFILE=N` (N > 1) lists the N slowest nodes, else 16.
        let top = std::env::var("SNNC_PROFILE").ok().and_then(|v| v.parse::<usize>().ok()).filter(|&n| n > 1);
        for (i, t) in rows.into_iter().take(top.unwrap_or(16)) {
            let node = &self.module.nodes[Handle::from_index(i)];
            let name = node.name.as_deref().unwrap_or("");
            eprintln!(
                "  {:>8.3} ms {:>5.1}%  %{i} {} {} {name}",
                t * 1e3,
                100.0 * t / total.max(1e-12),
                node.op.mnemonic(),
                node.ty
            );
        }
        let loops: Vec<String> = regions
            .iter()
            .enumerate()
            .filter(|&(r, _)| self.module.body[r].is_step())
            .map(|(r, t)| format!("region {r} ({}) {:.3} ms", how[r], t * 1e3))
            .collect();
        eprintln!("  step loops: {}", loops.join(", "));
        for (h, node) in self.module.nodes.iter() {
            let s = &stdp[h.index()];
            if matches!(node.op, Op::StdpUpdate { .. }) && s.total > 0 {
                eprintln!(
                    "  stdp_update %{}: {:.2}% of the weight entries' updates skipped (event-driven)",
                    h.index(),
                    100.0 * (1.0 - s.touched as f64 / s.total as f64)
                );
            }
        }
    }
}
