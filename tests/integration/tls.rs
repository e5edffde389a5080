//! HTTPS from inside an image: curl verifies a loopback TLS server's
//! certificate against a test CA placed at the CA bundle path with a
//! `[[file]]` (no --cacert), with name lookup through the NSS profile.

use std::fs;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    ok(Command::new("openssl").current_dir(dir).args(args));
}

#[test]
fn tls_curl_verifies_a_local_server_with_a_ca_from_the_recipe() {
    require("openssl", "openssl");
    require("curl", "curl");
    let tmp = tempdir();
    let d = tmp.path();
    // A test CA and a server certificate for localhost signed by it.
    openssl(
        d,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=bareroot test CA",
        ],
    );
    openssl(
        d,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "srv.key",
            "-out",
            "srv.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    fs::write(
        d.join("san.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "srv.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "srv.pem",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ],
    );

    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = Server(
        Command::new("openssl")
            .current_dir(d)
            .args([
                "s_server",
                "-accept",
                &format!("127.0.0.1:{port}"),
                "-cert",
                "srv.pem",
                "-key",
                "srv.key",
                "-www",
                "-quiet",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start openssl s_server"),
    );
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "openssl s_server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let recipe = |with_ca: bool| {
        let mut r = String::from(
            "name = \"curl-tls\"\nnss = [\"files\"]\n[config]\nentrypoint = [\"/usr/bin/curl\", \"-sS\"]\n[[binary]]\nsrc = \"/usr/bin/curl\"\n",
        );
        if with_ca {
            r.push_str(
                "[[file]]\nsrc = \"ca.pem\"\ndest = \"/etc/ssl/certs/ca-certificates.crt\"\n",
            );
        }
        r
    };
    let url = format!("https://localhost:{port}/");
    for (with_ca, name) in [(true, "with-ca"), (false, "without-ca")] {
        let r = d.join(format!("{name}.toml"));
        fs::write(&r, recipe(with_ca)).unwrap();
        let out = d.join(name);
        build(&r, &out);
        let o = run(bareroot().arg("run").arg(&out).arg("--").arg(&url));
        if with_ca {
            assert!(
                o.status.success() && stdout(&o).contains("s_server"),
                "curl in the image must verify the server with the recipe's CA: {o:?}"
            );
        } else {
            // 77: no CA bundle to verify with; 60: the certificate fails.
            assert!(
                matches!(o.status.code(), Some(60 | 77)),
                "without the CA curl must not trust the server: {o:?}"
            );
        }
    }
    drop(server);
}
