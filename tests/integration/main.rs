//! Integration tests: the real skiff binary, run as an unprivileged user (and as root),
//! against a real local registry fed with images the tests build themselves.

mod images;
mod registry;
mod util;

mod smoke_fixtures;
mod store_integrity;

mod support;

mod auth;
mod bad_input;
mod compat;
mod docs;
mod escape;
mod faults;
mod formats;
mod foundation;
mod hostile_corpus;
mod idmap_export;
mod idmap_rootful;
mod images_store;
mod images_transfer;
mod lifecycle;
mod lifecycle_exec;
mod lifecycle_flags;
mod monlog;
mod multinet;
mod netmembers;
mod netstack;
mod netuser;
mod networks;
mod ports;
mod progress;
mod push_gzip;
mod run_flags;
mod seccomp;
mod seccomp32;
mod security;
mod systemd;
mod unpack;
mod userns_modes;
mod volumes;
