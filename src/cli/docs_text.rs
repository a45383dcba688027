//! The parts of the manual that clap's definitions cannot hold: examples, exit status,
//! files and environment. Rendered as roff after clap_mangen's sections.

use std::io::Write;

enum Block {
    /// A paragraph of prose.
    Para(&'static str),
    /// A tagged paragraph: term, then its description.
    Item(&'static str, &'static str),
    /// An example: what it does, then the command lines.
    Example(&'static str, &'static str),
}

use Block::{Example, Item, Para};

const EXIT_RUN: &[Block] = &[
    Para("The exit status of the command run in the container, or one of these when skiff could not run it:"),
    Item("125", "an error in skiff itself: bad flags, an image that cannot be pulled, a name in use, a failure to set up the container"),
    Item("126", "the command was found but cannot be executed (permission denied, not a program)"),
    Item("127", "the command was not found in the container"),
    Para("With -d, 0 once the container runs."),
];

const EXIT_PLAIN: &[Block] = &[
    Item("0", "success"),
    Item(
        "125",
        "an error in skiff itself; the message on standard error names what failed and what to do",
    ),
];

const FILES: &[Block] = &[
    Item("~/.local/share/skiff (root: /var/lib/skiff)", "the store: skiff.db (SQLite), blobs/, layers/, containers/<id>/ (bundle, logs), volumes/; --root or SKIFF_ROOT moves it"),
    Item("$XDG_RUNTIME_DIR/skiff (root: /run/skiff)", "run state: locks, attach sockets; --runroot or SKIFF_RUNROOT moves it"),
    Item("/etc/subuid, /etc/subgid", "the subordinate ID ranges a rootless user's containers are mapped to (see skiff-system-doctor(1))"),
    Item("~/.config/containers/registries.conf, /etc/containers/registries.conf, registries.conf.d/", "registries, mirrors, insecure registries and short-name aliases, as podman reads them"),
    Item("$XDG_RUNTIME_DIR/containers/auth.json, ~/.config/containers/auth.json, ~/.docker/config.json", "registry credentials"),
    Item("~/.config/containers/systemd/*.container (root: /etc/containers/systemd/)", "Quadlet units turned into systemd services by skiff-quadlet(1)"),
];

const ENVIRONMENT: &[Block] = &[
    Item("SKIFF_ROOT, SKIFF_RUNROOT", "the same as --root and --runroot"),
    Item("XDG_DATA_HOME, XDG_RUNTIME_DIR, XDG_CONFIG_HOME, HOME", "where the rootless store, run state and configuration live"),
    Item("CONTAINERS_REGISTRIES_CONF", "a registries.conf to read instead of the default ones"),
    Item("REGISTRY_AUTH_FILE", "the credentials file to use"),
    Item("NOTIFY_SOCKET", "set by systemd for Type=notify services: the container's monitor sends MAINPID and READY=1 there (see --sdnotify)"),
];

const RUN_EXAMPLES: &[Block] = &[
    Example("Run a command and remove the container afterwards:", "skiff run --rm docker.io/library/busybox echo hello"),
    Example("Start a named service in the background that restarts on failure:", "skiff run -d --name web --restart on-failure:3 \\\n    -v \"$PWD/site:/srv:ro\" -e MODE=prod docker.io/library/busybox httpd -f -h /srv"),
    Example("An interactive shell with a terminal, as user 1000:", "skiff run -it -u 1000:1000 -w /tmp docker.io/library/busybox sh"),
    Example("A locked-down container: read-only root, no network, a tmpfs:", "skiff run --rm --read-only --network none --tmpfs /scratch busybox sh -c 'echo ok > /scratch/x'"),
    Example("As a systemd service (what skiff-quadlet(1) generates):", "skiff run --name=web --cidfile=%t/%N.cid --replace --rm --sdnotify=conmon -d busybox httpd -f"),
];

const CREATE_EXAMPLES: &[Block] = &[Example(
    "Create a container, start it later:",
    "id=$(skiff create --name job busybox sh -c 'date; sleep 5')\nskiff start -a job",
)];

const QUADLET_EXAMPLES: &[Block] = &[
    Example("Write ~/.config/containers/systemd/web.container:", "[Container]\nImage=docker.io/library/busybox\nExec=httpd -f -p 8080\nVolume=%h/site:/srv:ro\n\n[Install]\nWantedBy=default.target"),
    Example("Print the service skiff generates for it, then let systemd do it:", "skiff quadlet --user --dryrun\nsystemctl --user daemon-reload && systemctl --user start web"),
    Example("Install skiff as a generator (once, as root):", "ln -s /usr/local/bin/skiff /usr/lib/systemd/user-generators/skiff-user-generator\nln -s /usr/local/bin/skiff /usr/lib/systemd/system-generators/skiff-generator"),
];

const GENERATE_EXAMPLES: &[Block] = &[
    Example("A unit that creates a fresh container on every start:", "skiff generate systemd --new --name --files web\nmv container-web.service ~/.config/systemd/user/\nsystemctl --user enable --now container-web"),
];

const DOCTOR_EXAMPLES: &[Block] = &[
    Example("Check the host, then as JSON for scripts:", "skiff system doctor\nskiff system doctor --format json | jq '.checks[] | select(.status != \"ok\")'"),
];

const COMPLETION_EXAMPLES: &[Block] = &[
    Example("Enable completions for the current user:", "echo 'source <(skiff completion bash)' >> ~/.bashrc\necho 'source <(skiff completion zsh)' >> ~/.zshrc\nskiff completion fish > ~/.config/fish/completions/skiff.fish"),
];

/// Extra sections of one page, by page name (`skiff-run`).
fn sections(page: &str) -> Vec<(&'static str, &'static [Block])> {
    let mut v: Vec<(&'static str, &'static [Block])> = Vec::new();
    let examples: Option<&'static [Block]> = match page {
        "skiff-run" | "skiff-container-run" => Some(RUN_EXAMPLES),
        "skiff-create" | "skiff-container-create" => Some(CREATE_EXAMPLES),
        "skiff-quadlet" => Some(QUADLET_EXAMPLES),
        "skiff-generate-systemd" | "skiff-generate" => Some(GENERATE_EXAMPLES),
        "skiff-system-doctor" => Some(DOCTOR_EXAMPLES),
        "skiff-completion" => Some(COMPLETION_EXAMPLES),
        _ => None,
    };
    if let Some(e) = examples {
        v.push(("EXAMPLES", e));
    }
    let runs = matches!(
        page,
        "skiff-run" | "skiff-container-run" | "skiff-exec" | "skiff-container-exec"
    );
    v.push(("EXIT STATUS", if runs { EXIT_RUN } else { EXIT_PLAIN }));
    let full = matches!(
        page,
        "skiff" | "skiff-run" | "skiff-create" | "skiff-container-run" | "skiff-container-create"
    );
    if full {
        v.push(("FILES", FILES));
        v.push(("ENVIRONMENT", ENVIRONMENT));
    }
    v
}

/// Escapes text for roff: backslashes, hyphens (so they stay ASCII) and a leading
/// control character.
fn esc(s: &str) -> String {
    let s = s.replace('\\', "\\e").replace('-', "\\-");
    if s.starts_with('.') || s.starts_with('\'') {
        format!("\\&{s}")
    } else {
        s
    }
}

pub fn render_sections(page: &str, w: &mut dyn Write) -> std::io::Result<()> {
    for (title, blocks) in sections(page) {
        writeln!(w, ".SH \"{title}\"")?;
        for b in blocks {
            match b {
                Para(t) => writeln!(w, ".PP\n{}", esc(t))?,
                Item(term, text) => writeln!(w, ".TP\n\\fB{}\\fR\n{}", esc(term), esc(text))?,
                Example(what, code) => {
                    writeln!(w, ".PP\n{}\n.PP\n.RS 4\n.nf", esc(what))?;
                    for line in code.lines() {
                        writeln!(w, "{}", esc(line))?;
                    }
                    writeln!(w, ".fi\n.RE")?;
                }
            }
        }
    }
    writeln!(w, ".SH \"SEE ALSO\"")?;
    writeln!(
        w,
        "skiff(1), skiff\\-run(1), skiff\\-quadlet(1), skiff\\-system\\-doctor(1), podman(1)"
    )
}
