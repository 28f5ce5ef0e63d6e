//! Unpack every layer of an image into a directory (a manual benchmark
//! against `umoci unpack`): `unpack_image IMAGE DEST [NAME]`.

use std::path::Path;
use std::time::Instant;

use berth_image::{layer, resolve, Platform, Source, Whiteouts};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: unpack_image IMAGE DEST [NAME]");
        std::process::exit(2);
    }
    let start = Instant::now();
    let src = Source::open(Path::new(&args[1])).unwrap_or_else(|e| fail(e));
    let r = resolve(&src, &Platform::host(), args.get(3).map(String::as_str))
        .unwrap_or_else(|e| fail(e));
    let dest = Path::new(&args[2]);
    std::fs::create_dir_all(dest).unwrap();
    let (mut entries, mut bytes) = (0, 0);
    for l in &r.layers {
        let s = layer::apply(&src, l, dest, Whiteouts::Apply).unwrap_or_else(|e| fail(e));
        entries += s.entries;
        bytes += s.bytes;
    }
    println!(
        "{} layers, {entries} entries, {bytes} bytes in {:.2?}",
        r.layers.len(),
        start.elapsed()
    );
}

fn fail(e: berth_image::ImageError) -> ! {
    eprintln!("unpack_image: {e}");
    std::process::exit(1);
}
