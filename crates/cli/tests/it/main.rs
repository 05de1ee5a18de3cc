//! End-to-end tests of the `trib` binary against real nodes on free
//! loopback ports (one integration binary per crate, so the CLI tests link once).

mod actions;
mod attribution;
mod bench_serve;
mod crash;
mod datanet_browse;
mod datanet_flows;
mod datanet_upload;
mod datanets;
mod factory;
mod harness;
mod job_owner;
mod kill_loop;
mod ledger;
mod models;
mod openai_client;
mod rejections;
mod scenarios;
mod serving;
