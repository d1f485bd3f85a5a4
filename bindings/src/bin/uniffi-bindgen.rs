//! The uniffi code generator, built from the same uniffi version as the library:
//! `uniffi-bindgen generate --library libgridsync.so --language kotlin --out-dir DIR`.

fn main() {
    uniffi::uniffi_bindgen_main()
}
