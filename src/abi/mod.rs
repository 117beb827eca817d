//! The Rust side of every shader's interface, stated once: the bindings of each shader family
//! ([`bindings`]) and the uniform structs the host uploads ([`uniforms`]).
//!
//! The host builds every bind-group layout from these tables, and a CPU-only test
//! (`src/abi_check.rs`) parses each WGSL file with naga and checks its bindings (group, number,
//! name, address space, access) and uniform sizes against them, so the two languages cannot
//! drift apart.

pub(crate) mod bindings;
pub(crate) mod uniforms;
