use trib_serve::{BatchModel, EngineLimits};

use crate::common::{greedy, Fixture};

#[test]
fn the_cache_evicts_least_recently_used_adapters_by_bytes_and_never_reloads_a_hot_one() {
    let fx = Fixture::tiny();
    let names: Vec<_> = (0..4)
        .map(|i| fx.add(&format!("c{i}"), &fx.spec(i)))
        .collect();
    let one = fx.model.adapter_bytes(&fx.spec(0).build(&fx.cfg).unwrap());
    // Room for two and a half adapters.
    let h = fx.engine(EngineLimits::default(), one * 5 / 2);
    let run = |i: usize| {
        h.submit(greedy("a b c", Some(&names[i]), 3))
            .unwrap()
            .collect_blocking()
            .unwrap()
    };
    run(0);
    run(1);
    for _ in 0..5 {
        run(0); // hot: served from memory
    }
    let s = h.adapters();
    assert_eq!((s.loads, s.hits, s.evictions), (2, 5, 0), "{s:?}");
    run(2); // needs room: evicts c1, the least recently used
    let s = h.adapters();
    assert_eq!((s.loads, s.evictions, s.bytes), (3, 1, 2 * one), "{s:?}");
    let loaded: Vec<_> = s.adapters.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(loaded, ["c2", "c0"]);
    assert!(s.bytes <= s.capacity_bytes);
    // Four requests for a cold adapter at once: one load.
    let subs: Vec<_> = (0..4)
        .map(|_| h.submit(greedy("x y", Some(&names[3]), 2)).unwrap())
        .collect();
    let outs: Vec<_> = subs
        .into_iter()
        .map(|s| s.collect_blocking().unwrap())
        .collect();
    assert!(outs.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(h.adapters().loads, 4);
}

#[test]
fn explicit_unload_is_refused_while_running_and_frees_the_bytes_after() {
    let fx = Fixture::tiny();
    let n = fx.add("u", &fx.spec(3));
    let h = fx.engine(EngineLimits::default(), 1 << 20);
    h.start_adapter_load(&n).unwrap().wait().unwrap();
    let mut sub = h.submit(greedy("one two three", Some(&n), 200)).unwrap();
    // Wait until it produced a token: it is running and pins the adapter.
    let first = sub.events.blocking_recv().unwrap();
    assert!(
        matches!(first, trib_serve::StreamEvent::Delta { .. }),
        "{first:?}"
    );
    let e = h.unload_adapter(&n);
    // Either still running (409) or — if it already finished — freed.
    match e {
        Err(e) => assert_eq!(e.http_status(), 409),
        Ok(bytes) => assert!(bytes > 0),
    }
    drop(sub);
    for _ in 0..5000 {
        if h.adapters().adapters.iter().all(|a| a.pins == 0) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    if h.adapters().bytes > 0 {
        assert!(h.unload_adapter(&n).unwrap() > 0);
    }
    assert_eq!(h.adapters().bytes, 0);
}
