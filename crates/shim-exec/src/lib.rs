//! shim-exec: a containerd shim v2 (task API over ttrpc) that runs runc containers and execs
//! into them the way containerd-shim-runc-v2 and go-runc do.

pub mod bundle;
