//! All Wycheproof ed25519 vectors through the signature check every bundle,
//! trust update and permit goes through (`sig::verify_raw`, empty domain).

use quilt_bundle::hex;
use serde_json::Value;

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

#[test]
fn wycheproof_ed25519_all_vectors() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/wycheproof/ed25519_test.json"
    );
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let (mut valid, mut invalid, mut wrong) = (0, 0, Vec::new());
    for group in doc["testGroups"].as_array().unwrap() {
        let pk = unhex(group["publicKey"]["pk"].as_str().unwrap());
        for t in group["tests"].as_array().unwrap() {
            let msg = unhex(t["msg"].as_str().unwrap());
            let sig = unhex(t["sig"].as_str().unwrap());
            let ok = quilt_bundle::sig::verify_raw(&pk, b"", &msg, &sig);
            let want = match t["result"].as_str().unwrap() {
                "valid" => {
                    valid += 1;
                    true
                }
                "invalid" => {
                    invalid += 1;
                    false
                }
                other => panic!("unexpected result {other}"),
            };
            if ok != want {
                wrong.push((
                    t["tcId"].as_u64().unwrap(),
                    t["comment"].as_str().unwrap().to_string(),
                    hex::encode(&sig),
                ));
            }
        }
    }
    assert_eq!(
        valid + invalid,
        doc["numberOfTests"].as_u64().unwrap() as usize
    );
    assert_eq!(valid + invalid, 151);
    assert!(
        wrong.is_empty(),
        "vectors disagreeing with Wycheproof: {wrong:?}"
    );
}
