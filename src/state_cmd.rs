//! `switchyard state [--save] [--json]`: the live changes of a network (see
//! `switchyard::control::live_state`).

use switchyard::control::{cli, config, live_state};

/// `switchyard state [--save]`: the live state of the network's config.
pub(crate) fn state(target: &cli::Target, save: bool, json: bool) -> anyhow::Result<()> {
    let path = match cli::find(target) {
        Ok(cli::Found {
            config: Some(path), ..
        }) => path,
        Ok(_) => anyhow::bail!(
            "the live state is kept in the state directory the network's config names: pass \
             --config FILE or --network NAME"
        ),
        Err(e) => return Err(e.into()),
    };
    let cfg = config::load(&path)?;
    let file = live_state::path(&cfg.dhcp.state_dir);
    let st = live_state::LiveState::load(&file)?;
    if save {
        let n = st.changes.len();
        if n == 0 {
            println!("no live changes: {} says it all", path.display());
            return Ok(());
        }
        live_state::save_into_config(&path, &st).map_err(anyhow::Error::msg)?;
        live_state::LiveState::default().save(&file)?;
        println!(
            "{n} live changes written into {}; the live state is empty (the running daemon \
             already has them)",
            path.display()
        );
    } else if json {
        println!("{}", serde_json::to_string(&st.changes)?);
    } else if st.changes.is_empty() {
        println!("no live changes ({} says it all)", path.display());
    } else {
        for line in st.commands() {
            println!("{line}");
        }
    }
    Ok(())
}
