use std::io::Write;
use std::path::{Path, PathBuf};

use super::*;

/// The fixtures NumPy wrote (scripts/make_npy_fixtures.py).
fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/npy").join(name)
}

/// A folder of test files, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("snnc-npy-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An `.npy` file of version 1.0 with this header dict text and data.
fn raw_npy(text: &str, data: &[u8]) -> Vec<u8> {
    let mut b = MAGIC.to_vec();
    b.extend_from_slice(&[1, 0]);
    b.extend_from_slice(&((text.len() + 1) as u16).to_le_bytes());
    b.extend_from_slice(text.as_bytes());
    b.push(b'\n');
    b.extend_from_slice(data);
    b
}

/// A zip of these members, stored or deflated.
fn zip_of(members: &[(&str, &[u8])], method: zip::CompressionMethod) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, bytes) in members {
        zip.start_file(*name, zip::write::SimpleFileOptions::default().compression_method(method)).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

fn floats(a: &NpyArray) -> (u8, Vec<f64>) {
    match &a.values {
        NpyValues::Float { bits, data } => (*bits, data.clone()),
        other => panic!("not floats: {other:?}"),
    }
}

fn ints(a: &NpyArray) -> Vec<i64> {
    match &a.values {
        NpyValues::Int(v) => v.clone(),
        other => panic!("not ints: {other:?}"),
    }
}

fn err_npy(bytes: &[u8]) -> String {
    let dir = TempDir::new(&format!("err{}", bytes.len()));
    let path = dir.file("bad.npy", bytes);
    read_npy(&path).unwrap_err().to_string()
}

#[test]
fn tensors_round_trip_through_npy_and_npz() {
    let dir = TempDir::new("roundtrip");
    let tensors = [
        Tensor::from_f32(vec![2, 3], &[0.1, -2.5, 3e-8, 1e30, -0.0, 7.0]).unwrap(),
        Tensor::new(vec![3], ElemType::F64, vec![0.1, -1e300, f64::MIN_POSITIVE]).unwrap(),
        Tensor::new(vec![2, 2], ElemType::I64, vec![-3.0, 0.0, 9_007_199_254_740_992.0, 5.0]).unwrap(),
        Tensor::new(vec![], ElemType::F32, vec![4.5]).unwrap(),
        Tensor::new(vec![0, 4], ElemType::F64, vec![]).unwrap(),
    ];
    for (i, t) in tensors.iter().enumerate() {
        let path = dir.path(&format!("t{i}.npy"));
        write_npy(&path, t).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        // NumPy's layout: the data starts at a multiple of 64 bytes.
        assert_eq!((bytes.len() - t.len() * 8 / if t.dtype == ElemType::F32 { 2 } else { 1 }) % 64, 0);
        let a = read_npy(&path).unwrap();
        assert_eq!(a.shape, t.shape);
        assert_eq!(a.descr, ["<f4", "<f8", "<i8"][t.dtype as usize]);
        if t.dtype == ElemType::I64 {
            // Integers come back as ints; beyond 2^24 they are no f32 tensor.
            assert_eq!(ints(&a), vec![-3, 0, 1 << 53, 5]);
            let e = a.to_tensor("t2").unwrap_err().to_string();
            assert!(e.starts_with("t2: element [1, 0] = 9007199254740992 of the '<i8' array is not exact"), "{e}");
        } else {
            assert_eq!(a.to_tensor("t").unwrap(), *t);
        }
    }
    let named: Vec<(String, &Tensor)> = tensors.iter().enumerate().map(|(i, t)| (format!("t{i}"), t)).collect();
    let path = dir.path("all.npz");
    write_npz(&path, &named).unwrap();
    let arrays = read_npz(&path).unwrap();
    assert_eq!(arrays.keys().collect::<Vec<_>>(), ["t0", "t1", "t2", "t3", "t4"]);
    assert_eq!(arrays["t0"].to_tensor("t0").unwrap(), tensors[0]);
    assert_eq!(arrays["t1"].to_tensor("t1").unwrap(), tensors[1]);
    assert_eq!(arrays["t4"].shape, vec![0, 4]);

    let e = write_npz(&dir.path("dup.npz"), &[("a".into(), &tensors[0]), ("a".into(), &tensors[1])]).unwrap_err();
    assert!(e.to_string().contains("the array name 'a' is empty or given twice"), "{e}");
}

#[test]
fn reads_every_dtype_numpy_writes() {
    let base = [-2.0, -1.0, 0.0, 1.0, 2.0, 3.0];
    for (name, bits) in [("le_f2", 16), ("le_f4", 32), ("le_f8", 64), ("be_f8", 64)] {
        let a = read_npy(&fixture(&format!("{name}.npy"))).unwrap();
        assert_eq!(a.shape, vec![2, 3], "{name}");
        assert_eq!(floats(&a), (bits, base.iter().map(|x| x / 4.0).collect()), "{name}");
    }
    assert_eq!(read_npy(&fixture("be_f8.npy")).unwrap().descr, ">f8");
    for name in ["i1", "le_i2", "le_i4", "le_i8", "be_i4"] {
        let a = read_npy(&fixture(&format!("{name}.npy"))).unwrap();
        assert_eq!(ints(&a), vec![-2, -1, 0, 1, 2, 3], "{name}");
    }
    for name in ["le_u2", "le_u4", "le_u8"] {
        assert_eq!(ints(&read_npy(&fixture(&format!("{name}.npy"))).unwrap()), vec![0, 1, 2, 3, 4, 5], "{name}");
    }
    let u1 = read_npy(&fixture("u1.npy")).unwrap();
    assert_eq!(
        (u1.descr.as_str(), u1.shape.clone(), u1.values.clone()),
        ("|u1", vec![1, 3], NpyValues::U8(vec![0, 128, 255]))
    );
    assert_eq!(u1.to_tensor("u1").unwrap().data, vec![0.0, 128.0, 255.0]);
    let b1 = read_npy(&fixture("b1.npy")).unwrap();
    assert_eq!((b1.descr.as_str(), ints(&b1)), ("|b1", vec![1, 0, 1]));

    // float16 becomes an F32 tensor, exactly.
    let t = read_npy(&fixture("le_f2.npy")).unwrap().to_tensor("f2").unwrap();
    assert_eq!((t.dtype, t.data), (ElemType::F32, vec![-0.5, -0.25, 0.0, 0.25, 0.5, 0.75]));
    let t = read_npy(&fixture("be_f8.npy")).unwrap().to_tensor("f8").unwrap();
    assert_eq!(t.dtype, ElemType::F64);
}

#[test]
fn fortran_order_is_read_in_c_order() {
    let a = read_npy(&fixture("fortran.npy")).unwrap();
    assert_eq!(a.shape, vec![2, 3, 4]);
    assert_eq!(floats(&a), (32, (0..24).map(f64::from).collect()));
    // By hand: [[1, 2, 3], [4, 5, 6]] stored column by column.
    let data: Vec<u8> = [1i16, 4, 2, 5, 3, 6].iter().flat_map(|x| x.to_be_bytes()).collect();
    let bytes = raw_npy("{'descr': '>i2', 'fortran_order': True, 'shape': (2, 3), }", &data);
    let dir = TempDir::new("fortran");
    assert_eq!(ints(&read_npy(&dir.file("f.npy", &bytes)).unwrap()), vec![1, 2, 3, 4, 5, 6]);
    // A Fortran-order record array: every column is transposed.
    let rec: Vec<u8> =
        [(1u8, 10u8), (4, 40), (2, 20), (5, 50), (3, 30), (6, 60)].iter().flat_map(|&(a, b)| [a, b]).collect();
    let text = "{'descr': [('a', '|u1'), ('b', '|u1')], 'fortran_order': True, 'shape': (2, 3), }";
    let a = read_npy(&dir.file("r.npy", &raw_npy(text, &rec))).unwrap();
    assert_eq!(
        a.values,
        NpyValues::Record(vec![
            ("a".into(), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
            ("b".into(), vec![10.0, 20.0, 30.0, 40.0, 50.0, 60.0])
        ])
    );
}

#[test]
fn big_endian_files_built_by_hand() {
    let dir = TempDir::new("be");
    let data: Vec<u8> = [1.5f32, -2.0].iter().flat_map(|x| x.to_be_bytes()).collect();
    let a = read_npy(&dir.file("f.npy", &raw_npy("{'descr': '>f4', 'fortran_order': False, 'shape': (2,)}", &data)))
        .unwrap();
    assert_eq!((a.descr.as_str(), floats(&a)), (">f4", (32, vec![1.5, -2.0])));
    let data: Vec<u8> = [u64::MAX - 1, 7].iter().flat_map(|x| x.to_be_bytes()).collect();
    let bytes = raw_npy("{'descr': '>u8', 'fortran_order': False, 'shape': (2,)}", &data);
    let e = read_npy(&dir.file("u.npy", &bytes)).unwrap_err().to_string();
    assert!(e.ends_with("element [0] = 18446744073709551614 does not fit int64 (at most 9223372036854775807); values above it are not read"), "{e}");
}

#[test]
fn zero_dimensional_and_empty_arrays() {
    let a = read_npy(&fixture("scalar.npy")).unwrap();
    assert_eq!((a.shape.clone(), floats(&a)), (vec![], (64, vec![3.5])));
    assert_eq!(a.to_tensor("s").unwrap(), Tensor::new(vec![], ElemType::F64, vec![3.5]).unwrap());
    let e = read_npy(&fixture("empty.npy")).unwrap();
    assert_eq!((e.shape.clone(), floats(&e)), (vec![0, 3], (32, vec![])));
}

#[test]
fn structured_arrays_as_tonic_writes_them() {
    let a = read_npy(&fixture("events.npy")).unwrap();
    assert_eq!(a.shape, vec![3]);
    assert_eq!(a.descr, "[('x', '<i8'), ('y', '<i8'), ('t', '<i8'), ('p', '<i8')]");
    assert_eq!(
        a.values,
        NpyValues::Record(vec![
            ("x".into(), vec![1.0, 2.0, 3.0]),
            ("y".into(), vec![4.0, 5.0, 6.0]),
            ("t".into(), vec![100.0, 250.0, 1000.0]),
            ("p".into(), vec![1.0, 0.0, 1.0]),
        ])
    );
    let e = a.to_tensor("events.npy").unwrap_err().to_string();
    assert!(e.starts_with("events.npy: a record array with the fields x, y, t, p is not a tensor;"), "{e}");
    // Padding between fields (an aligned dtype) is skipped.
    let p = read_npy(&fixture("padded.npy")).unwrap();
    assert_eq!(p.values, NpyValues::Record(vec![("a".into(), vec![7.0, 8.0]), ("b".into(), vec![0.5, -1.5])]));
    // Integers a float64 cannot hold exactly are refused.
    let dir = TempDir::new("rec");
    let data: Vec<u8> = [(1i64 << 53) + 1].iter().flat_map(|x| x.to_le_bytes()).collect();
    let bytes = raw_npy("{'descr': [('t', '<i8')], 'fortran_order': False, 'shape': (1,)}", &data);
    let e = read_npy(&dir.file("big.npy", &bytes)).unwrap_err().to_string();
    assert!(
        e.ends_with("field 't' of element [0] is an integer beyond 2^53, which a float64 cannot hold exactly"),
        "{e}"
    );
    let text = "{'descr': [('v', '<f4', (2,))], 'fortran_order': False, 'shape': (1,)}";
    let e = read_npy(&dir.file("sub.npy", &raw_npy(text, &[0; 8]))).unwrap_err().to_string();
    assert!(e.contains("record field 'v' has the sub-array shape"), "{e}");
}

#[test]
fn npz_files_numpy_writes() {
    for name in ["stored.npz", "compressed.npz"] {
        let arrays = read_npz(&fixture(name)).unwrap();
        let x = &arrays["x"];
        assert_eq!((x.shape.clone(), floats(x)), (vec![2, 3], (32, vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0])), "{name}");
    }
    let stored = read_npz(&fixture("stored.npz")).unwrap();
    assert_eq!(stored.keys().collect::<Vec<_>>(), ["x", "y"]);
    assert_eq!(ints(&stored["y"]), vec![1, 2]);
    let compressed = read_npz(&fixture("compressed.npz")).unwrap();
    assert_eq!(compressed.keys().collect::<Vec<_>>(), ["events", "x"]);
    match &compressed["events"].values {
        NpyValues::Record(columns) => assert_eq!(columns[2], ("t".to_string(), vec![100.0, 250.0, 1000.0])),
        other => panic!("{other:?}"),
    }
    let mut arrays = stored;
    let e = take_array(&mut arrays, Path::new("in.npz"), "z", "name an input of the network").unwrap_err();
    assert_eq!(e.to_string(), "in.npz: no array 'z' (the file holds 'x', 'y'); name an input of the network");
    assert!(take_array(&mut arrays, Path::new("in.npz"), "x", "").is_ok());
}

#[test]
fn object_arrays_are_refused() {
    let e = read_npy(&fixture("object.npy")).unwrap_err().to_string();
    assert!(e.contains("pickled objects are not read; save numeric arrays"), "{e}");
    let e = err_npy(&raw_npy("{'descr': '<c8', 'fortran_order': False, 'shape': (1,)}", &[0; 8]));
    assert!(e.contains("dtype '<c8' (complex64) is not supported"), "{e}");
    let e = err_npy(&raw_npy("{'descr': '<U3', 'fortran_order': False, 'shape': (1,)}", &[0; 12]));
    assert!(e.contains("dtype '<U3' (str (unicode)) is not supported"), "{e}");
}

#[test]
fn malformed_npy_files_are_errors() {
    let good = std::fs::read(fixture("le_f4.npy")).unwrap();
    let e = err_npy(&good[..good.len() - 3]);
    assert!(
        e.ends_with("needs 24 bytes of data, the file holds only 21 after the header (truncated, or a corrupt header)"),
        "{e}"
    );
    let e = err_npy(&good[..40]);
    assert!(e.contains("the header announces 118 bytes, more than the file holds"), "{e}");
    let mut longer = good.clone();
    longer.push(0);
    let e = err_npy(&longer);
    assert!(e.ends_with("needs 24 bytes of data, the file holds more: bytes follow the data (corrupt, or a header that does not match it); save it again with numpy.save"), "{e}");
    assert!(err_npy(b"hello world").contains("not a NumPy .npy file (it does not start with \\x93NUMPY)"));
    assert!(err_npy(b"").contains("it is too short"));
    let mut v4 = good.clone();
    v4[6] = 4;
    assert!(err_npy(&v4).contains("the header says NumPy format version 4.0, which is not supported"));
    let huge = "{'descr': '<f8', 'fortran_order': False, 'shape': (4611686018427387904, 4611686018427387904)}";
    assert!(err_npy(&raw_npy(huge, &[])).contains("needs more bytes than can be counted"));
    let big = "{'descr': '<f8', 'fortran_order': False, 'shape': (1000000000000,)}";
    assert!(err_npy(&raw_npy(big, &[0; 16])).contains("needs 8000000000000 bytes of data, the file holds only 16"));
    for (text, why) in [
        ("{'descr': '<f8', 'shape': (1,)}", "lacks one of the keys"),
        ("{'descr': '<f8', 'fortran_order': False, 'shape': (-1,)}", "not a size"),
        ("{'descr': '<f8', 'fortran_order': 0, 'shape': (1,)}", "not True or False"),
        ("{'descr': '<f8', 'descr': '<f8', 'fortran_order': False, 'shape': (1,)}", "twice"),
        ("{'descr': '<f8', 'fortran_order': False, 'shape': (1,), 'x': 1}", "the key 'x'; a NumPy header has 'descr'"),
        ("{'descr': '<f8', 'fortran_order': False, 'shape': (1,", "not a valid Python literal"),
        ("[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]", "nested too deep"),
    ] {
        let e = err_npy(&raw_npy(text, &[0; 8]));
        assert!(e.contains(why), "{text}: {e}");
    }
    let npz = std::fs::read(fixture("stored.npz")).unwrap();
    assert!(err_npy(&npz).contains("a zip archive; an .npz is read by its extension"));
}

/// Every single-bit flip of a real file's header and of an npz's bytes is
/// read or refused, never a panic.
#[test]
fn bit_flips_never_panic() {
    let dir = TempDir::new("flip");
    let good = std::fs::read(fixture("events.npy")).unwrap();
    for byte in 0..128 {
        for bit in 0..8 {
            let mut b = good.clone();
            b[byte] ^= 1 << bit;
            let _ = read_npy(&dir.file("f.npy", &b));
        }
    }
    let npz = std::fs::read(fixture("compressed.npz")).unwrap();
    for byte in 0..npz.len() {
        let mut b = npz.clone();
        b[byte] ^= 0x10;
        let _ = read_npz(&dir.file("f.npz", &b));
    }
}

#[test]
fn malformed_npz_files_are_errors() {
    let dir = TempDir::new("npz");
    let err = |name: &str, bytes: &[u8]| read_npz(&dir.file(name, bytes)).unwrap_err().to_string();
    let npy = std::fs::read(fixture("le_f4.npy")).unwrap();
    assert!(err("a.npz", &npy).contains("a NumPy .npy file, not an .npz"));
    assert!(err("b.npz", b"hello").contains("not an .npz file"));
    let text = zip_of(&[("notes.txt", b"hi")], zip::CompressionMethod::Stored);
    assert!(err("c.npz", &text).contains("member 'notes.txt' is not an .npy array: this zip is not an .npz"));
    let npz = std::fs::read(fixture("stored.npz")).unwrap();
    assert!(err("d.npz", &npz[..npz.len() / 2]).contains("not a valid .npz (zip) file"));
    let inner = zip_of(&[("x.npy", &npy[..npy.len() - 1])], zip::CompressionMethod::Deflated);
    let e = err("e.npz", &inner);
    assert!(e.contains("e.npz (array 'x'): shape [2, 3] of dtype '<f4' needs 24 bytes of data"), "{e}");

    // A deflated member of 64 MiB behind a header of 4 floats: refused
    // after reading 17 bytes of its data.
    let mut bomb = raw_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (4,)}", &[0; 16]);
    bomb.resize(bomb.len() + (64 << 20), 0);
    let e = err("bomb.npz", &zip_of(&[("x.npy", &bomb)], zip::CompressionMethod::Deflated));
    assert!(e.contains("needs 16 bytes of data, the file holds more"), "{e}");
}
