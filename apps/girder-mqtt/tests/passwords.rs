//! Password files written by Mosquitto's own `mosquitto_passwd` (Debian's `mosquitto`, which
//! `.ci/run` installs) are read and checked as Mosquitto would; bad lines say which line.

use std::process::Command;

use girder_mqtt::auth::{PasswordFile, PasswordFileError};

fn mosquitto_passwd() -> Option<&'static str> {
    let found = Command::new("mosquitto_passwd").arg("-h").output().is_ok();
    if !found {
        eprintln!("SKIPPED: mosquitto_passwd is not installed (apt install mosquitto)");
    }
    found.then_some("mosquitto_passwd")
}

#[test]
fn files_written_by_mosquitto_passwd_check_as_mosquitto_would() {
    let Some(tool) = mosquitto_passwd() else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("girder-mqtt-pw-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("pw.txt");
    let users = [
        ("alice", "secret"),
        ("bob", "p@ss:word with spaces"),
        ("carol", "ünïcødé"),
    ];
    for (i, (user, password)) in users.iter().enumerate() {
        let mut cmd = Command::new(tool);
        if i == 0 {
            cmd.arg("-c");
        }
        let status = cmd
            .arg("-b")
            .arg(&file)
            .arg(user)
            .arg(password)
            .status()
            .unwrap();
        assert!(status.success());
    }
    let pw = PasswordFile::load(&file).unwrap();
    assert_eq!(pw.len(), 3);
    for (user, password) in users {
        assert!(pw.check(user, password.as_bytes()), "{user}");
        assert!(!pw.check(user, b"wrong"), "{user}");
    }
    assert!(!pw.check("dave", b"secret"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn salted_sha512_hashes_of_mosquitto_1_check_too() {
    // `$6$`: SHA-512 of the password and then the salt, as Mosquitto 1.x wrote them.
    use base64::Engine;
    use sha2::Digest;
    let salt = b"0123456789ab";
    let mut d = sha2::Sha512::new();
    d.update(b"hunter2");
    d.update(salt);
    let b64 = base64::engine::general_purpose::STANDARD;
    let line = format!("old:$6${}${}\n", b64.encode(salt), b64.encode(d.finalize()));
    let pw = PasswordFile::parse(&line).unwrap();
    assert!(pw.check("old", b"hunter2"));
    assert!(!pw.check("old", b"hunter3"));
}

#[test]
fn bad_lines_are_refused_with_their_line_number() {
    for (text, line) in [
        ("# comment\n\nalice\n", 3),
        ("alice:plaintext\n", 1),
        ("a:$7$0$c2FsdA==$aGFzaA==\n", 1),
        ("a:$7$101$c2FsdA==$not-base64!\n", 1),
        ("a:$5$c2FsdA==$aGFzaA==\n", 1),
        (":$6$c2FsdA==$aGFzaA==\n", 1),
    ] {
        match PasswordFile::parse(text) {
            Err(PasswordFileError::BadLine { line: l, why }) => {
                assert_eq!(l, line, "{text:?}: {why}")
            }
            other => panic!("{text:?}: {other:?}"),
        }
    }
    assert!(PasswordFile::parse("").unwrap().is_empty());
}
