//! `.nir` network files in the driver: reading one as a network and its
//! weights under the import conventions (`--nir-dt`, `--nir-from`,
//! `--nir-steps`), and `snnc import` (the equivalent RON network and
//! safetensors weights). `docs/nir.md` is the user's guide.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use snnc_frontend::Network;
use snnc_frontend::nir::{self, NirOptions, WeightTensor};
use snnc_ir::Module;
use snnc_runtime::{ElemType, Tensor, Weights};

use crate::driver::{Error, elem_type};

/// Whether a network file is a NIR file (by its extension, `.nir`).
pub fn is_nir(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("nir"))
}

/// A network read from a NIR file, with the file's weights and what the
/// import assumed.
#[derive(Clone, Debug)]
pub struct Imported {
    pub network: Network,
    pub weights: BTreeMap<String, WeightTensor>,
    pub assumptions: Vec<String>,
}

/// The network's name: the file's stem, with the characters a name may not
/// hold replaced by `_`.
fn stem_name(path: &Path) -> String {
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let s: String =
        stem.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' }).collect();
    if s.is_empty() { "nir".into() } else { s }
}

/// Reads and converts a `.nir` file. Every problem is the user's (exit 2)
/// and names the file, the node and the field.
pub fn import(path: &Path, opts: &NirOptions) -> Result<Imported, Error> {
    let fail = |e: nir::NirError| Error::User(format!("{}: {e}", path.display()));
    let file = nir::read_nir_file(path).map_err(fail)?;
    let c = nir::convert(&file, &stem_name(path), opts).map_err(fail)?;
    snnc_frontend::check_network(&c.network, &path.display().to_string())?;
    Ok(Imported { network: c.network, weights: c.weights, assumptions: c.assumptions })
}

/// The file's weights as a module's weights: checked against the module
/// (names, shapes), completed with its constant masks, in its float type.
pub fn module_weights(module: &Module, path: &Path, w: &BTreeMap<String, WeightTensor>) -> Result<Weights, Error> {
    let in_file = |e: String| Error::User(format!("{}: {e}", path.display()));
    let mut weights = to_tensors(w, ElemType::F64)?;
    snnc_runtime::complete_weights(module, &mut weights);
    snnc_runtime::check_weights(module, &weights).map_err(|e| in_file(e.to_string()))?;
    let dtype = elem_type(module.float);
    weights.values_mut().for_each(|t| *t = t.cast(dtype));
    Ok(weights)
}

fn to_tensors(w: &BTreeMap<String, WeightTensor>, dtype: ElemType) -> Result<Weights, Error> {
    w.iter()
        .map(|(k, t)| {
            Tensor::new(t.shape.clone(), dtype, t.data.clone())
                .map(|t| (k.clone(), t))
                .map_err(|e| Error::Internal(format!("weight `{k}`: {e}")))
        })
        .collect()
}

/// `snnc import`: writes the network as RON to `out` and its weights as
/// safetensors (F64, every value of the file exactly) next to it, with the
/// extension `.safetensors`. Returns the weights file's path.
pub fn write_import(imported: &Imported, out: &Path) -> Result<PathBuf, Error> {
    let ron = snnc_frontend::to_ron(&imported.network);
    let wpath = out.with_extension("safetensors");
    let tensors = to_tensors(&imported.weights, ElemType::F64)?;
    let bytes = snnc_runtime::write_weights_safetensors(&tensors).map_err(Error::Internal)?;
    let write = |p: &Path, b: &[u8]| {
        std::fs::write(p, b).map_err(|e| Error::Environment(format!("cannot write {}: {e}", p.display())))
    };
    write(out, ron.as_bytes())?;
    write(&wpath, &bytes)?;
    Ok(wpath)
}
