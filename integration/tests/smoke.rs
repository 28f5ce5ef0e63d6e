use berth_integration::*;

#[test]
fn harness_probe_runs() {
    let rt = Runtime::new("smoke");
    let r = rt.probe(|_| {});
    assert_eq!(r["uid"], 0);
    assert_eq!(r["pid"], 1);
    assert_eq!(r["hostname"], "berth-test");
}
