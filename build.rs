//! Rebuild when a migration is added or changed: they are embedded in the binary
//! (`db::MIGRATIONS`), and cargo does not watch that directory by itself.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
