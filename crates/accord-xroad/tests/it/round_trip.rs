//! Any valid service id with any acceptable path and query survives
//! format → parse → resolve unchanged; and no input makes the parser panic.

use accord_domain::id::{MemberId, ServiceId};
use accord_xroad::{format_request_target, Limits, RequestTarget, ServicePath};
use proptest::prelude::*;

/// An identifier part that can be called over r1: X-Road's characters,
/// but not `.` or `..` (dot segments in a URL; the parser refuses them).
fn part() -> impl Strategy<Value = String> {
    "[A-Za-z0-9'()+,\\-.=?]{1,64}".prop_filter("dot segment", |p| p != "." && p != "..")
}

fn service() -> impl Strategy<Value = ServiceId> {
    (
        part(),
        part(),
        part(),
        part(),
        part(),
        proptest::option::of(part()),
    )
        .prop_map(|(i, c, m, s, code, v)| {
            MemberId::new(&i, &c, &m)
                .unwrap()
                .subsystem(&s)
                .unwrap()
                .service(&code, v.as_deref())
                .unwrap()
        })
}

/// A decoded path segment the parser accepts: any printable text without
/// `/` or `\`, not a dot segment (also not with a `;` parameter).
fn segment() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 _~!$&'()*+,;=:@%?#\\[\\]{}|^\"<>.äö€中-]{1,16}".prop_filter(
        "dot segments are refused",
        |s| {
            let bare = s.split(';').next().unwrap();
            bare != "." && bare != ".."
        },
    )
}

fn path() -> impl Strategy<Value = Vec<String>> {
    (proptest::collection::vec(segment(), 0..6), any::<bool>()).prop_map(|(mut segs, slash)| {
        if slash {
            segs.push(String::new()); // trailing slash
        }
        segs
    })
}

fn query() -> impl Strategy<Value = Option<String>> {
    proptest::option::of("[A-Za-z0-9=&%._~!$'()*+,;:@/?\\-]{0,40}")
}

proptest! {
    #[test]
    fn targets_round_trip(service in service(), segments in path(), query in query()) {
        let path = ServicePath::from_segments(&segments).unwrap();
        let target = format_request_target(&service, &path, query.as_deref());
        let limits = Limits { max_target_len: 16 * 1024 };
        let parsed = RequestTarget::parse(&target, &limits)
            .map_err(|e| TestCaseError::fail(format!("{target}: {e}")))?;
        let resolved = parsed.resolve(|id| id == &service).unwrap();
        prop_assert_eq!(&resolved.service, &service);
        prop_assert_eq!(resolved.path.segments(), segments.as_slice());
        prop_assert_eq!(&resolved.path, &path);
        prop_assert_eq!(resolved.query.as_deref(), query.as_deref());
        prop_assert_eq!(
            format_request_target(&resolved.service, &resolved.path, resolved.query.as_deref()),
            target
        );
    }

    #[test]
    fn the_parser_never_panics(target in "/r1/[ -~]{0,80}|[\\PC]{0,40}|/r1/(%[0-9A-Fa-f]{2}|[a-z/.;%]){0,60}") {
        let _ = RequestTarget::parse(&target, &Limits::default())
            .map(|t| (t.candidates(), t.versionless()));
    }

    #[test]
    fn accepted_paths_never_hold_traversal(target in "/r1/a/b/c/d/e(/(%2[eEfF]|%5[cC]|\\.|;|a|%00|%3[bB])){0,6}") {
        if let Ok(t) = RequestTarget::parse(&target, &Limits::default()) {
            for candidate in t.candidates() {
                for segment in candidate.path.segments() {
                    let bare = segment.split(';').next().unwrap();
                    prop_assert!(bare != "." && bare != "..", "{target}");
                    prop_assert!(!segment.contains('/') && !segment.contains('\\') && !segment.contains('\0'), "{target}");
                }
            }
        }
    }
}
