//! The UniFFI binding generator, pinned to the uniffi version of this crate so that the
//! generated Kotlin, Swift and Python code always matches the scaffolding in the cdylib.
//! Run through `bindings/generate.sh`.

fn main() {
    uniffi::uniffi_bindgen_main()
}
