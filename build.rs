//! `cfg(fuse)`: the FUSE front end is built (always on Linux; on macOS with
//! `--features macfuse`, which needs macFUSE installed).
fn main() {
    println!("cargo::rustc-check-cfg=cfg(fuse)");
    let linux = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux");
    if linux || std::env::var_os("CARGO_FEATURE_MACFUSE").is_some() {
        println!("cargo::rustc-cfg=fuse");
    }
}
