fn main() {
    println!("wesher {}", env!("CARGO_PKG_VERSION"));
}
