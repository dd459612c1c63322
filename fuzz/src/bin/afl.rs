//! AFL++ entry point: `CHECKRAFT_FUZZ_TARGET=NAME`, built with `cargo afl
//! build --features afl` (see the crate docs).

fn main() {
    let name = std::env::var("CHECKRAFT_FUZZ_TARGET").unwrap_or_else(|_| {
        let names: Vec<_> = checkraft_fuzz::TARGETS.iter().map(|t| t.name).collect();
        panic!("set CHECKRAFT_FUZZ_TARGET to one of {names:?}")
    });
    let target =
        checkraft_fuzz::by_name(&name).unwrap_or_else(|| panic!("no fuzz target {name:?}"));
    afl::fuzz!(|data: &[u8]| {
        (target.run)(data);
    });
}
