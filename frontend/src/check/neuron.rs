//! The checks of the neuron-language layer (`Neuron`) and of Norse's zoo
//! (`IAF`, `Izhikevich`, `LIFEx`, `LIFRefrac`, `LIFAdExRefrac`, `CobaLIF`,
//! `LIBox`) and Tsodyks–Markram's synapse (`TsodyksMarkram`).

use super::{Checker, MEM};
use crate::error::Problem;
use crate::neuron::zoo::{IzhikevichParams, IzhikevichPreset, TsodyksMarkramParams};
use crate::neuron::{NeuronModel, Program};
use crate::schema::{
    CobaLifParams, IafParams, LiBoxParams, LifAdExParams, LifAdExRefracParams, LifExParams, LifParams, LifRefracParams,
    Method, ParamValue,
};

const DELTA_T_HELP: &str =
    "the sharpness of the exponential term (`exp((v - v_th) / delta_T)`); Norse's default is 0.5";

impl Checker {
    /// A model written as equations: every mistake with its place inside
    /// the equation.
    pub(super) fn neuron_model(&mut self, model: &NeuronModel, hidden: Option<u32>) {
        self.opt_size("hidden", hidden);
        if let Err(errors) = Program::check(model) {
            for e in errors {
                let mut problem = Problem::new(self.place(&format!("model.{}", e.at)), e.message);
                problem.help = e.help;
                self.push(problem);
            }
            return;
        }
        self.alpha("model.alpha", model.alpha, model.method);
    }

    fn delta_t(&mut self, v: &ParamValue) {
        self.each("p.delta_T", v, |c, f, x| c.positive(f, x, Some(DELTA_T_HELP.into())));
    }

    pub(super) fn iaf(&mut self, p: &IafParams) {
        let IafParams { v_th, v_reset, method, alpha, trainable: _ } = p;
        self.each_finite("p.v_th", v_th);
        self.each_finite("p.v_reset", v_reset);
        self.alpha("p.alpha", *alpha, *method);
        self.trainable(p, &[]);
    }

    pub(super) fn izhikevich(&mut self, preset: Option<IzhikevichPreset>, p: &IzhikevichParams) {
        let IzhikevichParams { a, b, c, d, sq, mn, bias, v_th, tau_inv, v_rest, u_rest, method, alpha } = p;
        let fields = [
            ("a", a),
            ("b", b),
            ("c", c),
            ("d", d),
            ("sq", sq),
            ("mn", mn),
            ("bias", bias),
            ("v_th", v_th),
            ("v_rest", v_rest),
            ("u_rest", u_rest),
        ];
        for (name, value) in fields {
            if let Some(x) = value {
                self.finite(&format!("p.{name}"), *x);
            }
        }
        if let Some(t) = tau_inv {
            self.positive("p.tau_inv", *t, Some("Norse's default is 250 (1/ms: the equations are in ms)".into()));
        }
        if let Some(x) = alpha {
            self.alpha("p.alpha", *x, method.unwrap_or_default());
        }
        if let Err(missing) = crate::neuron::zoo::izhikevich(preset, p, true) {
            let names: Vec<String> = missing.iter().map(|m| format!("`{m}`")).collect();
            let problem =
                Problem::new(self.place("p"), format!("a custom Izhikevich neuron needs {}", names.join(", ")))
                    .with_help(format!(
                        "name a Norse preset (`preset: tonic_spiking`; the presets are {}), or give every value as \
                     Norse's `create_izhikevich_spiking_behavior` takes them",
                        IzhikevichPreset::ALL.map(|p| p.name()).join(", ")
                    ));
            self.push(problem);
        }
    }

    /// The LIF fields of a zoo struct, checked as `LIFParameters`.
    fn lif_fields(&mut self, p: [&ParamValue; 5], method: Method, alpha: f64) {
        let [tau_syn_inv, tau_mem_inv, v_leak, v_th, v_reset] = p.map(Clone::clone);
        let lif = LifParams { tau_syn_inv, tau_mem_inv, v_leak, v_th, v_reset, method, alpha, trainable: Vec::new() };
        self.lif(&lif, true);
    }

    pub(super) fn lif_ex(&mut self, p: &LifExParams) {
        let LifExParams { delta_T, tau_syn_inv, tau_mem_inv, v_leak, v_th, v_reset, method, alpha, trainable: _ } = p;
        self.delta_t(delta_T);
        self.lif_fields([tau_syn_inv, tau_mem_inv, v_leak, v_th, v_reset], *method, *alpha);
        self.trainable(p, &[]);
    }

    fn rho_reset(&mut self, v: &ParamValue) {
        self.each("p.rho_reset", v, |c, f, x| {
            if c.finite(f, x) && x < 0.0 {
                let problem = Problem::new(c.place(f), format!("must be 0 or more, found {x}"))
                    .with_help("the number of refractory steps after a spike; Norse's default is 5");
                c.push(problem);
            }
        });
    }

    pub(super) fn lif_refrac(&mut self, p: &LifRefracParams) {
        let LifRefracParams { tau_syn_inv, tau_mem_inv, v_leak, v_th, v_reset, rho_reset, method, alpha, trainable: _ } =
            p;
        self.lif_fields([tau_syn_inv, tau_mem_inv, v_leak, v_th, v_reset], *method, *alpha);
        self.rho_reset(rho_reset);
        self.trainable(p, &[]);
    }

    pub(super) fn lif_adex_refrac(&mut self, p: &LifAdExRefracParams) {
        let LifAdExRefracParams {
            adaptation_current,
            adaptation_spike,
            delta_T,
            tau_ada_inv,
            tau_syn_inv,
            tau_mem_inv,
            v_leak,
            v_th,
            v_reset,
            rho_reset,
            method,
            alpha,
            trainable: _,
        } = p;
        let adex = LifAdExParams {
            adaptation_current: adaptation_current.clone(),
            adaptation_spike: adaptation_spike.clone(),
            delta_T: delta_T.clone(),
            tau_ada_inv: tau_ada_inv.clone(),
            tau_syn_inv: tau_syn_inv.clone(),
            tau_mem_inv: tau_mem_inv.clone(),
            v_leak: v_leak.clone(),
            v_th: v_th.clone(),
            v_reset: v_reset.clone(),
            method: *method,
            alpha: *alpha,
            trainable: Vec::new(),
        };
        self.lif_adex(&adex);
        self.rho_reset(rho_reset);
        self.trainable(p, &[]);
    }

    pub(super) fn coba_lif(&mut self, p: &CobaLifParams) {
        let CobaLifParams {
            tau_syn_exc_inv,
            tau_syn_inh_inv,
            c_m_inv,
            g_l,
            e_rev_I,
            e_rev_E,
            v_rest,
            v_reset,
            v_thresh,
            method,
            alpha,
            trainable: _,
        } = p;
        self.each_tau("p.tau_syn_exc_inv", tau_syn_exc_inv, 0.2);
        self.each_tau("p.tau_syn_inh_inv", tau_syn_inh_inv, 0.2);
        self.each_step("p.tau_syn_exc_inv", tau_syn_exc_inv, "the excitatory conductance `g_e`");
        self.each_step("p.tau_syn_inh_inv", tau_syn_inh_inv, "the inhibitory conductance `g_i`");
        self.each("p.c_m_inv", c_m_inv, |c, f, x| {
            c.positive(f, x, Some("the inverse membrane capacitance; Norse's default is 5".into()))
        });
        for (name, v) in [
            ("p.g_l", g_l),
            ("p.e_rev_I", e_rev_I),
            ("p.e_rev_E", e_rev_E),
            ("p.v_rest", v_rest),
            ("p.v_reset", v_reset),
        ] {
            self.each_finite(name, v);
        }
        self.each_finite("p.v_thresh", v_thresh);
        self.alpha("p.alpha", *alpha, *method);
        self.trainable(p, &[]);
    }

    pub(super) fn li_box(&mut self, p: &LiBoxParams) {
        let LiBoxParams { tau_mem_inv, v_leak, trainable: _ } = p;
        self.each_tau("p.tau_mem_inv", tau_mem_inv, 100.0);
        self.each_step("p.tau_mem_inv", tau_mem_inv, MEM);
        self.each_finite("p.v_leak", v_leak);
        self.trainable(p, &[]);
    }

    /// Python floats, as Norse's: finite `U`, positive inverse time
    /// constants whose step `dt * tau_*_inv` stays at most 2.
    #[allow(non_snake_case)]
    pub(super) fn tsodyks_markram(&mut self, p: &TsodyksMarkramParams) {
        let TsodyksMarkramParams { U, tau_f_inv, tau_d_inv } = p;
        self.finite("p.U", *U);
        let f_help = "the inverse facilitation time constant (1/s); Norse's default is 20";
        let d_help = "the inverse depression time constant (1/s); Norse's default is 1/0.75";
        self.positive("p.tau_f_inv", *tau_f_inv, Some(f_help.into()));
        self.positive("p.tau_d_inv", *tau_d_inv, Some(d_help.into()));
        self.step("p.tau_f_inv", *tau_f_inv, "the facilitation `u`");
        self.step("p.tau_d_inv", *tau_d_inv, "the resources `x_d`");
    }
}
