//! `gridsync-field`: the command-line field app (see `gridsync_examples::field`).

fn main() {
    std::process::exit(gridsync_examples::field::main());
}
