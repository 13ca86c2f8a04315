//! `snnc export`: a network (RON, or a `.nir` file read back) and its
//! weights as a NIR file. The mapping and what is refused are in
//! `docs/nir.md` ("Export"); the conversion is
//! [`snnc_frontend::nir::export`], the HDF5 writer
//! [`snnc_frontend::nir::write_nir_bytes`].

use std::collections::BTreeMap;
use std::path::Path;

use snnc_frontend::Network;
use snnc_frontend::nir::{self, WeightTensor};
use snnc_runtime::Weights;

use crate::driver::Error;

/// The weights as the exporter takes them (every value as f64).
pub fn weight_tensors(weights: &Weights) -> BTreeMap<String, WeightTensor> {
    weights.iter().map(|(k, t)| (k.clone(), WeightTensor { shape: t.shape.clone(), data: t.data.clone() })).collect()
}

/// The NIR file's bytes for `net` with `weights`. A layer NIR cannot
/// express is the user's error (exit 2), naming the layer and why.
pub fn export_bytes(net: &Network, weights: &Weights, source: &Path) -> Result<Vec<u8>, Error> {
    let file = nir::export(net, &weight_tensors(weights))
        .map_err(|e| Error::User(format!("{}: cannot export to NIR: {e}", source.display())))?;
    nir::write_nir_bytes(&file).map_err(|e| Error::Internal(format!("writing the NIR file: {e}")))
}

/// Writes `net` with `weights` to `out` as NIR.
pub fn write_export(net: &Network, weights: &Weights, source: &Path, out: &Path) -> Result<(), Error> {
    let bytes = export_bytes(net, weights, source)?;
    std::fs::write(out, bytes).map_err(|e| Error::Environment(format!("cannot write {}: {e}", out.display())))
}
