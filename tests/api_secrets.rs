//! The service secrets provider: per-stack keys, batches, rename, master key.

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use common::*;
use pbackend::engine::crypto::MasterKey;
use serde_json::json;

#[tokio::test]
async fn batch_round_trip_and_stack_isolation() {
    let srv = TestServer::start().await;
    let api = srv.api();
    let a = stack_path("proj", "a");
    let b = stack_path("proj", "b");
    api.create_stack("proj", "a").await.ok();
    api.create_stack("proj", "b").await.ok();

    let plains: Vec<String> = (0..50).map(|i| B64.encode(format!("secret-{i}"))).collect();
    let r = api
        .post_gz(&format!("{a}/batch-encrypt"), json!({"plaintexts": plains}))
        .await
        .json();
    let cts: Vec<String> = r["ciphertexts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(cts.len(), 50);
    let r = api
        .post_gz(&format!("{a}/batch-decrypt"), json!({"ciphertexts": cts}))
        .await
        .json();
    for (i, ct) in cts.iter().enumerate() {
        assert_eq!(r["plaintexts"][ct], json!(plains[i]));
    }
    // Empty batches as Go encodes them (a nil slice is `null`; CLI v3.150 sends that).
    let r = api
        .post_gz(&format!("{a}/batch-decrypt"), json!({"ciphertexts": null}))
        .await;
    assert_eq!(r.json(), json!({"plaintexts": {}}));
    let r = api
        .post_gz(&format!("{a}/batch-encrypt"), json!({"plaintexts": null}))
        .await;
    assert_eq!(r.json(), json!({"ciphertexts": []}));
    // Single calls.
    let ct = api
        .post(
            &format!("{a}/encrypt"),
            json!({"plaintext": B64.encode("x")}),
        )
        .await
        .json()["ciphertext"]
        .as_str()
        .unwrap()
        .to_owned();
    let pt = api
        .post(&format!("{a}/decrypt"), json!({"ciphertext": ct}))
        .await
        .json();
    assert_eq!(pt["plaintext"], json!(B64.encode("x")));

    // A ciphertext of stack a does not decrypt under stack b.
    let msg = api
        .post(&format!("{b}/decrypt"), json!({"ciphertext": ct}))
        .await
        .error(400);
    assert!(msg.contains("could not be decrypted"), "{msg}");
    api.post_gz(&format!("{b}/batch-decrypt"), json!({"ciphertexts": [ct]}))
        .await
        .error(400);
    // Garbage is refused clearly.
    api.post(
        &format!("{a}/decrypt"),
        json!({"ciphertext": "not base64!"}),
    )
    .await
    .error(400);
    api.post(
        &format!("{a}/decrypt"),
        json!({"ciphertext": B64.encode("short")}),
    )
    .await
    .error(400);
    // Audit hints are accepted.
    let r = api
        .post(
            &format!("{a}/decrypt/log-batch-decryption"),
            json!({"commandName": "pulumi stack export"}),
        )
        .await;
    assert_eq!(r.status, 204);
}

#[tokio::test]
async fn key_survives_rename_under_old_and_new_names() {
    let srv = TestServer::start().await;
    let api = srv.api();
    let old = stack_path("proj", "dev");
    api.create_stack("proj", "dev").await.ok();
    let ct = api
        .post(
            &format!("{old}/encrypt"),
            json!({"plaintext": B64.encode("keep me")}),
        )
        .await
        .json()["ciphertext"]
        .as_str()
        .unwrap()
        .to_owned();
    api.post(
        &format!("{old}/rename"),
        json!({"newName": "prod", "newProject": "other"}),
    )
    .await
    .ok();
    let new = stack_path("other", "prod");
    for path in [&new, &old] {
        let r = api
            .post(&format!("{path}/decrypt"), json!({"ciphertext": ct}))
            .await
            .json();
        assert_eq!(r["plaintext"], json!(B64.encode("keep me")), "via {path}");
    }
    // Stack routes other than secrets do not resolve the old name.
    api.get(&old).await.error(404);
}

#[tokio::test]
async fn wrong_master_key_refuses_to_start_and_keys_survive_restart() {
    let mut srv = TestServer::start().await;
    let stack = stack_path("proj", "dev");
    let ct = {
        let api = srv.api();
        api.create_stack("proj", "dev").await.ok();
        api.post(
            &format!("{stack}/encrypt"),
            json!({"plaintext": B64.encode("v")}),
        )
        .await
        .json()["ciphertext"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    srv.stop().await;
    let right = srv.master.clone();
    srv.master = MasterKey::generate();
    let err = srv
        .launch()
        .await
        .expect_err("a wrong master key must refuse to start");
    assert!(err.contains("master key does not match"), "{err}");
    srv.master = right;
    srv.launch().await.unwrap();
    let r = srv
        .api()
        .post(&format!("{stack}/decrypt"), json!({"ciphertext": ct}))
        .await
        .json();
    assert_eq!(r["plaintext"], json!(B64.encode("v")));
}

#[tokio::test]
async fn importing_another_stacks_state_reencrypts_its_secrets() {
    let srv = TestServer::start().await;
    let api = srv.api();
    let a = stack_path("proj", "a");
    let b = stack_path("other", "b");
    api.create_stack("proj", "a").await.ok();
    api.create_stack("other", "b").await.ok();
    let ct = api
        .post(
            &format!("{a}/encrypt"),
            json!({"plaintext": B64.encode("moved")}),
        )
        .await
        .json()["ciphertext"]
        .as_str()
        .unwrap()
        .to_owned();
    let secret = json!({"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270", "ciphertext": ct});
    let mut d = deployment(1, "x");
    d["deployment"]["secrets_providers"]["state"]["project"] = json!("proj");
    d["deployment"]["secrets_providers"]["state"]["stack"] = json!("a");
    d["deployment"]["resources"][1]["outputs"]["secret"] = secret;
    api.post_gz(&format!("{b}/import"), d).await.ok();

    let e = api.get(&format!("{b}/export")).await.json();
    assert_eq!(e["deployment"]["secrets_providers"]["state"]["stack"], "b");
    assert_eq!(
        e["deployment"]["secrets_providers"]["state"]["project"],
        "other"
    );
    let new_ct = e["deployment"]["resources"][1]["outputs"]["secret"]["ciphertext"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(new_ct, ct);
    // Stack a is deleted; b still decrypts its copy.
    api.delete(&format!("{a}?force=true")).await.ok();
    let r = api
        .post(&format!("{b}/decrypt"), json!({"ciphertext": new_ct}))
        .await
        .json();
    assert_eq!(r["plaintext"], json!(B64.encode("moved")));
}

#[tokio::test]
async fn ciphertexts_go_out_uncompressed_and_large_plaintexts_compressed() {
    let srv = TestServer::start().await;
    let api = srv.api();
    let a = stack_path("proj", "a");
    api.create_stack("proj", "a").await.ok();
    // Large secrets (the CLI encrypts whole outputs): replies well above the 4 KB threshold.
    let plains: Vec<String> = (0..4)
        .map(|i| B64.encode(format!("{i}-{}", "value ".repeat(3000))))
        .collect();
    let enc = api
        .post_gz(&format!("{a}/batch-encrypt"), json!({"plaintexts": plains}))
        .await;
    assert!(enc.body.len() > 4096, "{}", enc.body.len());
    assert_eq!(
        enc.headers.get("content-encoding"),
        None,
        "random bytes gain nothing from gzip"
    );
    let cts = enc.json()["ciphertexts"].clone();
    let single = api
        .post(&format!("{a}/encrypt"), json!({"plaintext": plains[0]}))
        .await;
    assert_eq!(single.headers.get("content-encoding"), None);
    let dec = api
        .post_gz(&format!("{a}/batch-decrypt"), json!({"ciphertexts": cts}))
        .await;
    assert_eq!(
        dec.headers
            .get("content-encoding")
            .map(|v| v.to_str().unwrap()),
        Some("gzip"),
        "plaintexts are JSON text and still compress"
    );
    assert_eq!(dec.json()["plaintexts"].as_object().unwrap().len(), 4);
}
