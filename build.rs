//! Links the functions berth's commands run next to each other at the start
//! of .text (hack/order/berth.order, made by hack/order/gen.sh): with lld,
//! the default linker for x86_64-unknown-linux-gnu. Symbols the list names
//! that no longer exist are skipped.

fn main() {
    println!("cargo:rerun-if-changed=hack/order/berth.order");
    let Ok(dir) = std::env::var("CARGO_MANIFEST_DIR") else {
        return;
    };
    let order = std::path::Path::new(&dir).join("hack/order/berth.order");
    let target = std::env::var("TARGET").unwrap_or_default();
    if target == "x86_64-unknown-linux-gnu" && order.is_file() {
        println!(
            "cargo:rustc-link-arg-bin=berth=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        println!("cargo:rustc-link-arg-bin=berth=-Wl,--no-warn-symbol-ordering");
    }
}
