fn main() {
    let mb: usize = std::env::args().nth(1).unwrap().parse().unwrap();
    let mut sql = String::from("insert into t (a, b) values ");
    let mut i = 0u64;
    while sql.len() < mb << 20 {
        sql.push_str(&format!("({i}, 'x{i}'),"));
        i += 1;
    }
    sql.pop();
    let t = std::time::Instant::now();
    let a = custos_gateway::classify::Analyser::default().analyse(&sql);
    eprintln!("{} MiB: {:?} parsed={} {:?}", mb, t.elapsed(), a.parsed, a.tables);
}
