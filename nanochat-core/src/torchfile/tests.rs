use super::*;
use crate::io::HostData;

/// A file of the native checkpoint fixtures (`tests/fixtures/reference/head/<rel>`).
pub(crate) fn native(rel: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/reference/head")
        .join(rel)
}

fn expected(gen: &str) -> serde_json::Value {
    let p = native(&format!("{gen}/expected.json"));
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

#[test]
fn reads_nanochats_model_files_with_their_dtypes_and_shapes() {
    for (gen, file) in [
        (
            "native_head",
            "native_head/base_checkpoints/d3/model_000200.pt",
        ),
        ("native_v1", "native_v1/base_checkpoints/d3/model_000150.pt"),
    ] {
        let f = TorchFile::open(&native(file)).unwrap();
        let sd = f.state_dict().unwrap();
        let want = expected(gen)["state_dict"].as_object().unwrap().clone();
        assert_eq!(sd.len(), want.len(), "{gen}");
        for (k, v) in &want {
            let t = &sd[k];
            assert_eq!(t.dtype.name(), v[0].as_str().unwrap(), "{gen} {k}");
            let shape: Vec<usize> = v[1]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect();
            assert_eq!(t.tensor.shape, shape, "{gen} {k}");
        }
    }
}

#[test]
fn token_bytes_pt_is_read_as_int32() {
    let f = TorchFile::open(&native("native_head/tokenizer/token_bytes.pt")).unwrap();
    let Value::Tensor(t) = &f.root else {
        panic!("{:?}", f.root)
    };
    let t = f.tensor(t, "token_bytes").unwrap();
    assert_eq!(t.dtype, TorchDType::I32);
    let want: Vec<i64> = expected("native_head")["token_bytes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    assert_eq!(t.tensor.data, HostData::Int(want));
}

#[test]
fn write_then_read_is_the_identity_for_every_dtype_and_container() {
    let vals = [1.5, -2.25, 0.0, 3.0e-3, 7.0, -1.0];
    let mut items = Vec::new();
    for dt in [
        TorchDType::F32,
        TorchDType::F64,
        TorchDType::F16,
        TorchDType::BF16,
        TorchDType::I64,
        TorchDType::I32,
        TorchDType::U8,
    ] {
        items.push((
            format!("_orig_mod.t_{}", dt.name()),
            PtWriteValue::tensor(dt, &[2, 3], &vals),
        ));
    }
    let sd = PtWriteValue::OrderedDict(items);
    let bytes = write::pt_bytes("model_000001", &sd).unwrap();
    let f = TorchFile::parse(bytes, "mem.pt").unwrap();
    let got = f.state_dict().unwrap();
    assert_eq!(got.len(), 7);
    // Float dtypes narrower than f64 are read exactly into f32, f64 stays f64.
    assert_eq!(
        got["t_bfloat16"].tensor.data,
        HostData::F32(vec![1.5, -2.25, 0.0, 0.003_005_981_4, 7.0, -1.0])
    );
    assert_eq!(
        got["t_float16"].tensor.data,
        HostData::F32(vec![1.5, -2.25, 0.0, 0.0030002594, 7.0, -1.0])
    );
    assert_eq!(
        got["t_float32"].tensor.data,
        HostData::F32(vals.iter().map(|&v| v as f32).collect())
    );
    assert_eq!(got["t_float64"].tensor.data, HostData::Float(vals.to_vec()));
    assert_eq!(
        got["t_int32"].tensor.data,
        HostData::Int(vec![1, -2, 0, 0, 7, -1])
    );
    assert_eq!(got["t_uint8"].tensor.shape, vec![2, 3]);

    let nested = PtWriteValue::Dict(vec![
        (
            PtWriteValue::str("state"),
            PtWriteValue::Dict(vec![(
                PtWriteValue::Int(0),
                PtWriteValue::Dict(vec![
                    (PtWriteValue::str("step"), PtWriteValue::Int(70_000)),
                    (
                        PtWriteValue::str("exp_avg"),
                        PtWriteValue::tensor(TorchDType::F32, &[2], &[1.0, 2.0]),
                    ),
                ]),
            )]),
        ),
        (
            PtWriteValue::str("param_groups"),
            PtWriteValue::List(vec![PtWriteValue::Dict(vec![
                (PtWriteValue::str("lr"), PtWriteValue::Float(0.02)),
                (PtWriteValue::str("nesterov"), PtWriteValue::Bool(true)),
                (PtWriteValue::str("x"), PtWriteValue::None),
                (PtWriteValue::str("big"), PtWriteValue::Int(-(1 << 40))),
                (
                    PtWriteValue::str("betas"),
                    PtWriteValue::Tuple(vec![PtWriteValue::Float(0.8), PtWriteValue::Float(0.95)]),
                ),
            ])]),
        ),
    ]);
    let f = TorchFile::parse(write::pt_bytes("optim", &nested).unwrap(), "o.pt").unwrap();
    let Value::Dict(top) = &f.root else { panic!() };
    assert_eq!(top[0].0, Value::Str("state".into()));
    let Value::List(groups) = &top[1].1 else {
        panic!()
    };
    let Value::Dict(g) = &groups[0] else { panic!() };
    assert_eq!(g[0].1, Value::Float(0.02));
    assert_eq!(g[1].1, Value::Bool(true));
    assert_eq!(g[2].1, Value::None);
    assert_eq!(g[3].1, Value::Int(-(1 << 40)));
    assert_eq!(
        g[4].1,
        Value::List(vec![Value::Float(0.8), Value::Float(0.95)])
    );
}

/// A torch archive whose data.pkl is `pkl` (and one storage `0` of `storage` bytes).
fn archive(pkl: &[u8], storage: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let o =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("a/data.pkl", o).unwrap();
    zip.write_all(pkl).unwrap();
    zip.start_file("a/data/0", o).unwrap();
    zip.write_all(storage).unwrap();
    zip.finish().unwrap().into_inner()
}

fn refused(pkl: &[u8]) -> String {
    match TorchFile::parse(archive(pkl, &[0; 16]), "bad.pt") {
        Ok(f) => match f.state_dict() {
            Ok(_) => panic!("accepted"),
            Err(e) => e.to_string(),
        },
        Err(e) => e.to_string(),
    }
}

#[test]
fn refuses_globals_opcodes_and_structures_outside_the_subset_naming_them() {
    // os.system('x'): the classic.
    let e = refused(b"\x80\x02cos\nsystem\nX\x01\x00\x00\x00x\x85R.");
    assert!(e.contains("bad.pt") && e.contains("os.system"), "{e}");
    // builtins.eval via STACK_GLOBAL
    let e = refused(b"\x80\x04\x8c\x08builtins\x8c\x04eval\x93.");
    assert!(e.contains("builtins.eval"), "{e}");
    // INST (protocol 0 object creation)
    let e = refused(b"(i__main__\nX\n.");
    assert!(e.contains("INST"), "{e}");
    // truncated
    let e = refused(b"\x80\x02X\xff\x00\x00\x00ab");
    assert!(e.contains("truncated"), "{e}");
    // no STOP
    let e = refused(b"\x80\x02N");
    assert!(e.contains("truncated"), "{e}");
    // not a zip at all
    let e = TorchFile::parse(b"PK\x03\x04junk".to_vec(), "x.pt")
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("x.pt") && e.contains("zip"), "{e}");
    // a list nested 100000 deep: an error, not a stack overflow
    let mut deep = b"\x80\x02".to_vec();
    for _ in 0..100_000 {
        deep.extend(b"(");
    }
    deep.extend(b"]");
    for _ in 0..100_000 {
        deep.extend(b"\x85");
    }
    deep.push(b'.');
    let e = refused(&deep);
    assert!(e.contains("deep"), "{e}");
    // exponential sharing: x = (x, x) sixty times
    let mut shared = b"\x80\x02N".to_vec();
    for _ in 0..60 {
        shared.extend(b"2\x86");
    }
    shared.push(b'.');
    let e = refused(&shared);
    assert!(e.contains("too many times") || e.contains("deep"), "{e}");
}

fn tensor_pkl(class: &str, numel: u32, size: u32) -> Vec<u8> {
    let mut p = b"\x80\x02ccollections\nOrderedDict\n)R(X\x01\x00\x00\x00w".to_vec();
    p.extend(b"ctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storage");
    p.extend(format!("ctorch\n{class}\n").as_bytes());
    p.extend(b"X\x01\x00\x00\x000X\x03\x00\x00\x00cpuJ");
    p.extend(numel.to_le_bytes());
    p.extend(b"tQK\x00J");
    p.extend(size.to_le_bytes());
    p.extend(b"\x85K\x01\x85\x89ccollections\nOrderedDict\n)RtRu.");
    p
}

#[test]
fn a_storage_must_be_as_long_as_its_header_claims_and_hold_its_view() {
    // 4 floats stored, 4 claimed, view of 4: fine.
    let ok = TorchFile::parse(
        archive(&tensor_pkl("FloatStorage", 4, 4), &[0; 16]),
        "ok.pt",
    )
    .unwrap()
    .state_dict()
    .unwrap();
    assert_eq!(ok["w"].tensor.shape, vec![4]);
    // a header claiming 2^31 elements: an error naming the tensor, nothing allocated
    let e = TorchFile::parse(
        archive(&tensor_pkl("FloatStorage", i32::MAX as u32, 4), &[0; 16]),
        "huge.pt",
    )
    .unwrap()
    .state_dict()
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("huge.pt") && e.contains("`w`"), "{e}");
    // a view past its storage
    let e = TorchFile::parse(archive(&tensor_pkl("FloatStorage", 4, 5), &[0; 16]), "v.pt")
        .unwrap()
        .state_dict()
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("reaches element 4"), "{e}");
    // an unknown storage class is refused as a global
    let e = refused(&tensor_pkl("ComplexFloatStorage", 4, 4));
    assert!(e.contains("torch.ComplexFloatStorage"), "{e}");
}

/// CI replays the `torch_file` fuzz target's corpus (`fuzz/seeds/torch_file/`: nanochat's
/// real files, ours, and the inputs fuzzing found interesting) through the same function.
#[test]
fn the_fuzz_corpus_replays_without_a_panic() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/torch_file");
    let mut files = 0;
    let mut tensors = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let data = std::fs::read(e.unwrap().path()).unwrap();
        tensors += fuzz_one(&data);
        files += 1;
    }
    assert!(files >= 4, "{files} files in {}", dir.display());
    assert!(tensors >= 2, "the seeds' tensors read: {tensors}");
}

/// Views into a storage: contiguous ones (with an offset, or size-1 dimensions of any stride)
/// read straight from the storage, others element by element; both give the view's values.
#[test]
fn views_read_their_elements_contiguous_or_not() {
    let vals = [0.5, 1.0, 2.0, 3.0, 4.0, 5.0];
    let sd = PtWriteValue::OrderedDict(vec![(
        "w".into(),
        PtWriteValue::tensor(TorchDType::F32, &[2, 3], &vals),
    )]);
    let f = TorchFile::parse(write::pt_bytes("m", &sd).unwrap(), "mem.pt").unwrap();
    let Value::Dict(items) = &f.root else {
        panic!("a dict: {:?}", f.root)
    };
    let Value::Tensor(base) = &items[0].1 else {
        panic!("a tensor")
    };
    let view = |offset: u64, size: &[u64], stride: &[u64]| {
        let t = TensorRef {
            offset,
            size: size.to_vec(),
            stride: stride.to_vec(),
            ..base.clone()
        };
        f.tensor(&t, "w").unwrap().tensor.data
    };
    let f32s = |v: &[f32]| HostData::F32(v.to_vec());
    assert_eq!(
        view(0, &[3, 2], &[1, 3]),
        f32s(&[0.5, 3.0, 1.0, 4.0, 2.0, 5.0])
    );
    assert_eq!(view(2, &[2], &[2]), f32s(&[2.0, 4.0]));
    assert_eq!(view(1, &[5], &[1]), f32s(&[1.0, 2.0, 3.0, 4.0, 5.0]));
    assert_eq!(view(3, &[1, 3], &[99, 1]), f32s(&[3.0, 4.0, 5.0]));
    assert_eq!(
        view(0, &[2, 3], &[3, 1]),
        f32s(&[0.5, 1.0, 2.0, 3.0, 4.0, 5.0])
    );
}
