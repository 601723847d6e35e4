//! The multicall binary: installed as hard links named after each plugin, it runs the
//! plugin named by `argv[0]`.
//!
//! - `rcni` alone lists the plugins it contains;
//! - `rcni install DIR` creates the hard links in DIR;
//! - `rcni PLUGIN` runs PLUGIN (handy for debugging).

use std::path::Path;
use std::process::ExitCode;

/// dlmalloc instead of the libc allocator. A plugin call is one short process, so
/// what counts is start-up and the first few hundred allocations: musl's allocator
/// maps and unmaps a page for nearly every small allocation (~70 extra syscalls in a
/// bridge ADD), and glibc's spends its own start-up time. dlmalloc grows its heap in
/// large steps; a bridge ADD was 0.1 ms (glibc) and 0.65 ms (musl) faster with it
/// (bench/README.md).
#[global_allocator]
static ALLOCATOR: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let invoked_as = args.first().map(|a| basename(a)).unwrap_or_default();
    // The real kernel, and delegated IPAM plugins that are this same binary run
    // in-process.
    let kernel = cni_net::Kernel::real();
    let invoke = cni_skel::Invoke {
        in_process: Some(rcni::plugin),
        kernel: kernel.clone(),
        table_only: false,
    };
    let cx = cni_skel::Context {
        kernel: &kernel,
        delegate: &invoke,
    };
    if let Some(plugin) = rcni::plugin(&invoked_as) {
        cni_skel::main(plugin, &cx);
    }
    match args.get(1).map(String::as_str) {
        None => {
            println!(
                "{}: the CNI plugins in one binary. Plugins:",
                cni_skel::RCNI_VERSION
            );
            for (name, _) in rcni::plugins() {
                println!("  {name}");
            }
            println!(
                "\nUsage: rcni install DIR    create hard links named after each plugin in DIR\n       rcni firewall       list the CNI nftables rules (no nft binary needed)"
            );
            ExitCode::SUCCESS
        }
        Some("install") => match args.get(2) {
            Some(dir) => install(Path::new(dir)),
            None => usage("install needs a directory"),
        },
        Some("firewall") => firewall(),
        Some(name) => match rcni::plugin(name) {
            Some(plugin) => cni_skel::main(plugin, &cx),
            None => usage(&format!("no plugin named {name:?}")),
        },
    }
}

/// Lists the rules of the nftables tables CNI plugins use, read in-process (a node
/// without the `nft` binary can still see them).
fn firewall() -> ExitCode {
    use cni_net::nft::{Family, Nft};
    let tables = [
        (Family::Inet, "cni_plugins_masquerade"),
        (Family::Inet, "cni_firewall"),
        (Family::Ip, "cni_hostport"),
        (Family::Ip6, "cni_hostport"),
        (Family::Bridge, "nat"),
    ];
    let mut engine = match Nft::open() {
        Ok(engine) => engine,
        Err(e) => return usage(&format!("cannot read nftables: {e}")),
    };
    for (family, table) in tables {
        let listing = match engine.list(family, table) {
            Ok(listing) => listing,
            Err(e) => return usage(&format!("cannot list {} {table}: {e}", family.name())),
        };
        for chain in &listing.chains {
            println!("{} {table} {chain}", family.name());
            for rule in listing.rules.iter().filter(|r| &r.chain == chain) {
                let comment = if rule.comment.is_empty() {
                    String::new()
                } else {
                    format!(" comment {:?}", rule.comment)
                };
                println!(
                    "    handle {}: {} expressions{comment}",
                    rule.handle,
                    rule.exprs.len()
                );
            }
        }
    }
    ExitCode::SUCCESS
}

fn basename(path: &str) -> String {
    Path::new(path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn usage(problem: &str) -> ExitCode {
    eprintln!("rcni: {problem}\nUsage: rcni [install DIR | firewall | PLUGIN]");
    ExitCode::from(2)
}

/// Hard links, so that `cp -r` of the directory still gives working plugins; a link
/// across filesystems falls back to a copy. An existing file of that name is replaced.
fn install(dir: &Path) -> ExitCode {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return usage(&format!("cannot find this executable: {e}")),
    };
    if let Err(e) = std::fs::create_dir_all(dir) {
        return usage(&format!("cannot create {}: {e}", dir.display()));
    }
    for (name, _) in rcni::plugins() {
        let target = dir.join(name);
        let temp = dir.join(format!(".{name}.rcni-tmp"));
        let _ = std::fs::remove_file(&temp);
        let placed =
            std::fs::hard_link(&exe, &temp).or_else(|_| std::fs::copy(&exe, &temp).map(drop));
        // Rename over the old file: a runtime never sees a missing or half-written plugin.
        let renamed = placed.and_then(|()| std::fs::rename(&temp, &target));
        // rename() of two links to the same file does nothing and succeeds (POSIX), so
        // when the target already is this binary the temporary link is still there.
        let _ = std::fs::remove_file(&temp);
        if let Err(e) = renamed {
            return usage(&format!("cannot install {}: {e}", target.display()));
        }
        println!("{}", target.display());
    }
    ExitCode::SUCCESS
}
