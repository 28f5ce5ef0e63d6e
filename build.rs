//! Links the functions berth's commands run next to each other at the start
//! of .text (hack/order/berth.order, made by hack/order/gen.sh): with lld,
//! the default linker for x86_64-unknown-linux-gnu since Rust 1.90 (older
//! toolchains, or BERTH_NO_ORDER set, link without the order). Symbols the
//! list names that no longer exist are skipped.

fn main() {
    println!("cargo:rerun-if-changed=hack/order/berth.order");
    let Ok(dir) = std::env::var("CARGO_MANIFEST_DIR") else {
        return;
    };
    let order = std::path::Path::new(&dir).join("hack/order/berth.order");
    let target = std::env::var("TARGET").unwrap_or_default();
    println!("cargo:rerun-if-env-changed=BERTH_NO_ORDER");
    let wanted = std::env::var_os("BERTH_NO_ORDER").is_none();
    if wanted && target == "x86_64-unknown-linux-gnu" && order.is_file() && links_with_lld() {
        println!(
            "cargo:rustc-link-arg-bin=berth=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        println!("cargo:rustc-link-arg-bin=berth=-Wl,--no-warn-symbol-ordering");
    }
}

/// rustc 1.90 or later links x86_64-unknown-linux-gnu with its own lld.
fn links_with_lld() -> bool {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let Ok(out) = std::process::Command::new(rustc).arg("-V").output() else {
        return false;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    // "rustc 1.95.0 (59807616e 2026-04-14)"
    let mut v = text
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .split('.')
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let (major, minor) = (v.next().unwrap_or(0), v.next().unwrap_or(0));
    (major, minor) >= (1, 90)
}
