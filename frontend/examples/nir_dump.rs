fn main() {
    for p in std::env::args().skip(1) {
        let t = std::time::Instant::now();
        match snnc_frontend::nir::read_nir_file(std::path::Path::new(&p)) {
            Err(e) => println!("{p}: READ ERROR {e}"),
            Ok(f) => {
                println!("{p}: read in {:?}, version {:?}", t.elapsed(), f.version);
                fn show(g: &snnc_frontend::nir::NirGraph, ind: &str) {
                    for (n, node) in &g.nodes {
                        let ps: Vec<String> = node.params.iter().map(|(k, a)| format!("{k}{:?}{}", a.shape, if a.len() <= 4 { format!("={:?}", a.data) } else { String::new() })).collect();
                        println!("{ind}{n}: {:?} {} {:?}", node.kind, ps.join(" "), node.strings);
                        if let Some(sub) = &node.graph { show(sub, &format!("{ind}  ")); }
                    }
                    println!("{ind}edges {:?} meta {:?}", g.edges, g.metadata.keys().collect::<Vec<_>>());
                }
                show(&f.graph, "  ");
                for prod in ["spec"] {
                    let opts = snnc_frontend::nir::NirOptions { producer: snnc_frontend::nir::Producer::from_name(prod).unwrap(), ..Default::default() };
                    match snnc_frontend::nir::convert(&f, "net", &opts) {
                        Err(e) => println!("  CONVERT ERROR {e}"),
                        Ok(c) => { for a in &c.assumptions { println!("  assume: {a}"); }
                          match snnc_frontend::check_network(&c.network, "x") { Ok(_) => println!("  check ok"), Err(e) => println!("  CHECK ERR {e}") }
                        }
                    }
                }
            }
        }
    }
}
