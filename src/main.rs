// mimalloc instead of glibc malloc: the gateway allocates many small, short-lived objects
// across threads (envelopes, JSON values, HTTP bodies), where glibc's arenas spent about a
// third of the CPU in a profile of the end-to-end benchmark (`gateway bench`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    gateway::cli::main()
}
