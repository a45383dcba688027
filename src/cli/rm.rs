//! `rm`: remove containers, with podman's `-f -t SECONDS` (stop gracefully first) and
//! `--depend` (remove the containers that share one's namespaces before it).

use std::collections::BTreeSet;

use super::container::RmArgs;
use super::manage::remove_container_with;
use super::{Ctx, Exit};
use crate::storage::Store;

pub fn rm(ctx: &Ctx, a: RmArgs) -> anyhow::Result<i32> {
    if a.time.is_some() && !a.force {
        return Err(Exit::with(
            125,
            "--force option must be specified to use the --time option",
        ));
    }
    let mut store = Store::open(&ctx.paths)?;
    let mut code = 0;
    let names: Vec<String> = if a.all {
        store.containers()?.into_iter().map(|c| c.id).collect()
    } else {
        super::cidfile::targets(&a.containers, &a.cidfile, a.ignore)?
    };
    let mut done = BTreeSet::new();
    for name in &names {
        let c = match store.find_container(name) {
            Ok(c) => c,
            // With --all, a container that removed itself meanwhile (--rm) is not an error;
            // nor, as in podman, a missing one with --force (`rm -f name || true` scripts).
            Err(_) if a.all || a.ignore => continue,
            Err(crate::storage::StorageError::NoSuchContainer(_)) if a.force => continue,
            Err(e) => {
                eprintln!("Error: {e}");
                code = 1;
                continue;
            }
        };
        // With --depend, dependents go first (deepest first) and every container
        // removed is named by its full ID, as podman prints them.
        let order = if a.depend {
            removal_order(&store, &c.id)?
        } else {
            vec![c.id.clone()]
        };
        for id in order {
            if !done.insert(id.clone()) {
                continue;
            }
            let rec = match store.find_container(&id) {
                Ok(r) => r,
                Err(_) if id != c.id => continue,
                Err(e) => {
                    eprintln!("Error: {e}");
                    code = 1;
                    continue;
                }
            };
            match remove_container_with(ctx, &mut store, &rec, a.force, a.time) {
                Err(_) if (a.all || a.ignore) && store.find_container(&id).is_err() => {}
                Ok(()) if a.depend => println!("{id}"),
                Ok(()) => println!("{name}"),
                Err(e) => {
                    eprintln!("Error: {e}");
                    code = e.exit_code();
                }
            }
        }
    }
    Ok(code)
}

/// `id` and everything that depends on it, each after its dependents.
fn removal_order(store: &Store, id: &str) -> anyhow::Result<Vec<String>> {
    fn visit(
        store: &Store,
        id: &str,
        seen: &mut BTreeSet<String>,
        out: &mut Vec<String>,
    ) -> anyhow::Result<()> {
        if !seen.insert(id.to_string()) {
            return Ok(());
        }
        for d in crate::runtime::networks::dependents(store, id)? {
            visit(store, &d, seen, out)?;
        }
        out.push(id.to_string());
        Ok(())
    }
    let mut out = Vec::new();
    visit(store, id, &mut BTreeSet::new(), &mut out)?;
    Ok(out)
}
