//! The dashboard in a real browser (Debian's `chromium`, headless): the page loads from the
//! node, its script fetches the API and renders the node, its supervision tree, its busiest
//! processes and its alarms; a screenshot of it is not blank.
//!
//! Skips (and says so) only when no Chromium is installed; `.ci/run` installs it.

use std::path::PathBuf;
use std::time::Duration;

use girder::{ChildSpec, Context, ExitReason, Node, Supervisor};
use girder_ops::{Alarm, Ops, OpsConfig, Severity};

fn browser() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|b| std::env::split_paths(&path).map(move |d| d.join(b)))
        .find(|p| p.is_file())
}

async fn run_browser(browser: &PathBuf, extra: &[&str], url: &str) -> std::process::Output {
    let mut cmd = tokio::process::Command::new(browser);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--hide-scrollbars",
        "--window-size=1280,1000",
        // Lets the page's timers run and its fetches finish before the dump or screenshot.
        "--virtual-time-budget=4000",
    ]);
    cmd.args(extra).arg(url);
    tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("the browser finishes within a minute")
        .expect("the browser runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_renders_live_data_in_a_browser() {
    let Some(browser) = browser() else {
        eprintln!("SKIPPED: no chromium on PATH (apt-get install chromium); the dashboard was not tested in a browser");
        return;
    };
    // On Girder's schedulers, so the summary line shows them.
    let pool = girder::Schedulers::new(2);
    let node = Node::builder("dash-node").schedulers(pool.clone()).build();
    let _sup = Supervisor::builder()
        .child(ChildSpec::process(
            "ingest_worker",
            |mut ctx: Context<()>| async move {
                ctx.recv().await;
                ExitReason::Normal
            },
        ))
        .name("app_sup")
        .start(&node)
        .await
        .unwrap();
    let backlog = node.spawn(|mut ctx: Context<u32>| async move {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        let _ = ctx.recv().await;
        ExitReason::Normal
    });
    node.register("backlogged", backlog.pid()).unwrap();
    for i in 0..42 {
        backlog.send(i).unwrap();
    }
    let ops = Ops::start_local(node.clone(), OpsConfig::new("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    ops.alarms()
        .raise(Alarm::new(
            "disk_nearly_full",
            Severity::Major,
            "dash-node",
            "/var at 97%",
        ))
        .unwrap();
    // Without the live event stream: headless virtual time waits for open requests to end.
    let url = format!("http://{}/#live=0", ops.local_addr());

    let out = run_browser(&browser, &["--dump-dom"], &url).await;
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "browser failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "dash-node",
        "disk_nearly_full",
        "ingest_worker",
        "app_sup",
        "backlogged",
        ">42<",
        "2 schedulers, run queue",
    ] {
        assert!(
            dom.contains(expected),
            "the rendered page lacks {expected:?}:\n{dom}"
        );
    }

    let shot = std::env::temp_dir().join(format!("girder-dashboard-{}.png", std::process::id()));
    let arg = format!("--screenshot={}", shot.display());
    let out = run_browser(&browser, &[&arg], &url).await;
    assert!(
        out.status.success(),
        "browser failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let px = info.color_type.samples();
    let pixels: Vec<&[u8]> = buf[..info.buffer_size()].chunks(px).collect();
    let background = pixels[0];
    let differing = pixels.iter().filter(|p| p[..3] != background[..3]).count();
    let colours: std::collections::HashSet<&[u8]> = pixels.iter().copied().collect();
    assert!(
        (info.width, info.height) == (1280, 1000),
        "{}x{}",
        info.width,
        info.height
    );
    assert!(
        differing * 20 > pixels.len() && colours.len() > 50,
        "the screenshot looks blank: {differing} of {} pixels differ from the corner, {} colours",
        pixels.len(),
        colours.len()
    );
    let _ = std::fs::remove_file(&shot);
}
