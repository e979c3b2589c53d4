//! The six schedules against HF transformers' get_scheduler (fixture:
//! tools/make_schedule_fixture.py), to 1e-7 relative at every step.

use bertfit_train::schedule::{Schedule, ScheduleConfig, ScheduleKind, Warmup};

#[test]
fn every_schedule_matches_hf_at_every_step() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/schedules.json");
    let fixture: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let cases = fixture["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 10);
    let mut worst = 0f64;
    for case in cases {
        let kind: ScheduleKind = case["kind"].as_str().unwrap().parse().unwrap();
        let config = ScheduleConfig {
            kind,
            warmup: Warmup::Steps(case["warmup"].as_u64().unwrap() as usize),
            num_cycles: case.get("num_cycles").and_then(|v| v.as_f64()),
            power: case.get("power").and_then(|v| v.as_f64()).unwrap_or(1.0),
            lr_end: case.get("lr_end").and_then(|v| v.as_f64()).unwrap_or(1e-7),
        };
        let total = case["total"].as_u64().unwrap() as usize;
        let schedule = config.build(case["lr"].as_f64().unwrap(), total);
        let hf: Vec<f64> = case["lrs"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        assert_eq!(hf.len(), total);
        for (step, &theirs) in hf.iter().enumerate() {
            let ours = schedule.lr(step);
            let scale = ours.abs().max(theirs.abs());
            let rel = if scale == 0.0 { 0.0 } else { (ours - theirs).abs() / scale };
            worst = worst.max(rel);
            assert!(rel <= 1e-7 || (ours - theirs).abs() < 1e-20, "{kind:?} step {step}: ours {ours:e}, HF {theirs:e}");
        }
    }
    eprintln!("schedules vs HF transformers {}: worst relative difference {worst:e}", fixture["transformers"]);
}
