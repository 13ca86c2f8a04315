use snnc_frontend::*;

const TUT: &str = r#"(
    version: 1,
    name: "tutorial",
    steps: 32,
    input: [1, 28, 28],
    encoder: ConstantCurrent(),
    layers: [
        Flatten(),
        LIFRecurrent(name: "lif1", hidden: 100, p: (v_th: 0.5)),
        Linear(out: 10, bias: false),
        LI(),
    ],
    readout: MaxLogSoftmax,
)"#;

fn show(label: &str, text: &str) {
    match parse_network(text, "net.ron") {
        Ok(n) => println!("=== {label}: OK {:?}\n", n),
        Err(e) => println!("=== {label}:\n{e}\n"),
    }
}

#[test]
fn explore() {
    show("tut", TUT);
    show("some", &TUT.replace("ConstantCurrent()", "Some(ConstantCurrent())").replace("name: \"lif1\"", "name: Some(\"lif1\")"));
    show("flatten unit", &TUT.replace("Flatten()", "Flatten"));
    show("readout parens", &TUT.replace("MaxLogSoftmax", "MaxLogSoftmax()"));
    show("named struct", &format!("Network{TUT}"));
    show("wrong struct name", &format!("Net{TUT}"));
    show("missing paren", &TUT.replace("LI(),", "LI(,"));
    show("missing close", &TUT.replace("LI(),", "LI("));
    show("missing final", &TUT[..TUT.len()-1]);
    show("wrong type", &TUT.replace("steps: 32", "steps: \"32\""));
    show("float steps", &TUT.replace("steps: 32", "steps: 3.5"));
    show("neg steps", &TUT.replace("steps: 32", "steps: -3"));
    show("huge steps", &TUT.replace("steps: 32", "steps: 99999999999999"));
    show("unknown field", &TUT.replace("bias: false", "biass: false"));
    show("unknown field p", &TUT.replace("v_th: 0.5", "vth: 0.5"));
    show("unknown top field", &TUT.replace("steps: 32", "step: 32"));
    show("unknown kind", &TUT.replace("Linear(", "Lenear("));
    show("unknown kind2", &TUT.replace("LI()", "Dropout()"));
    show("unknown method", &TUT.replace("v_th: 0.5", "v_th: 0.5, method: superspike"));
    show("string method", &TUT.replace("v_th: 0.5", "v_th: 0.5, method: \"super\""));
    show("string kind", &TUT.replace("LI()", "\"LI\""));
    show("missing field", &TUT.replace("out: 10, ", ""));
    show("missing top field", &TUT.replace("steps: 32,", ""));
    show("bad version", &TUT.replace("version: 1", "version: 2"));
    show("missing version", &TUT.replace("version: 1,", ""));
    show("nan", &TUT.replace("v_th: 0.5", "v_th: NaN"));
    show("int float", &TUT.replace("v_th: 0.5", "v_th: 1"));
    show("unknown encoder", &TUT.replace("ConstantCurrent()", "Constant()"));
    show("unknown readout", &TUT.replace("MaxLogSoftmax", "Softmax"));
    show("dup field", &TUT.replace("bias: false", "bias: false, bias: true"));
    show("braces", &TUT.replace("Linear(out: 10, bias: false)", "Linear { out: 10 }"));
    show("trailing", &format!("{TUT} x"));
    show("empty", "");
    show("deep", &"[".repeat(200));
    show("tab", "(\n\tversion: 1,\n\tname: 3,\n)");
    show("enable", &format!("#![enable(implicit_some)]\n{TUT}"));
    show("bool", &TUT.replace("bias: false", "bias: 0"));
    show("input neg", &TUT.replace("[1, 28, 28]", "[1, -28, 28]"));
    show("missing comma", &TUT.replace("steps: 32,", "steps: 32"));
    show("missing layer close", &TUT.replace("bias: false),", "bias: false,"));
    show("missing layer close2", &TUT.replace("p: (v_th: 0.5)),", "p: (v_th: 0.5),"));
    show("missing list close", &TUT.replace("    ],\n", ""));
    show("p int", &TUT.replace("p: (v_th: 0.5)", "p: 5"));
    show("inf", &TUT.replace("v_th: 0.5", "v_th: inf, alpha: -inf"));
    show("unicode", &TUT.replace("\"tutorial\"", "\"tütörial\", x: é"));
    let net = parse_network(TUT, "x").unwrap();
    println!("{}", to_ron(&net));
}
