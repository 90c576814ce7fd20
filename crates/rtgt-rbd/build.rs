//! Bindings to the installed librbd/librados, generated from their headers
//! (`librbd-dev`). A machine without them (or without libclang, which
//! bindgen needs) builds rtgt without the RBD backstore: `cfg(have_librbd)`
//! is unset and opening an `rbd` backstore says how to get it.

use std::env;
use std::path::{Path, PathBuf};

const HEADER: &str = "/usr/include/rbd/librbd.h";

fn main() {
    println!("cargo::rustc-check-cfg=cfg(have_librbd)");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed={HEADER}");
    println!("cargo::rerun-if-env-changed=RTGT_NO_RBD");
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("librbd.rs");
    if env::var_os("RTGT_NO_RBD").is_some() || !Path::new(HEADER).exists() {
        println!("cargo::warning=librbd headers not found ({HEADER}): rtgt is built without the rbd backstore (apt-get install librbd-dev libclang-dev)");
        return;
    }
    // bindgen panics when it cannot load libclang; that too means "build
    // without", not a failed build.
    let generated = std::panic::catch_unwind(|| {
        bindgen::Builder::default()
            .header(HEADER)
            .allowlist_function("rbd_.*")
            .allowlist_function("rados_.*")
            .allowlist_type("rbd_.*")
            .allowlist_var("RBD_.*")
            .allowlist_var("LIBRADOS_.*")
            .layout_tests(false)
            .generate()
    });
    match generated {
        Ok(Ok(b)) => {
            b.write_to_file(&out).expect("write the bindings into OUT_DIR");
            println!("cargo::rustc-link-lib=rbd");
            println!("cargo::rustc-link-lib=rados");
            println!("cargo::rustc-cfg=have_librbd");
        }
        Ok(Err(e)) => println!("cargo::warning=bindgen failed on {HEADER} ({e}): rtgt is built without the rbd backstore"),
        Err(_) => println!("cargo::warning=bindgen could not run (libclang missing? apt-get install libclang-dev): rtgt is built without the rbd backstore"),
    }
}
