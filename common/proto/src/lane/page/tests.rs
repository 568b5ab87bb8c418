//! Tests of the lane wire format: captured reference pages, pagination, reassembly bounds, and robustness against arbitrary bytes.

use super::*;
use crate::lane::Body;
use proptest::prelude::*;
use serde_json::{Map, Value};

/// The captured reference page (raet 0.6.8, yard `main` to yard `other`).
const CAPTURED: &[u8] = b"ri RAET\nvn 0\npk 0\nsn main\ndn other\nsi 660e1029c5d41cbdf5\nbi 1\npn 0000\npc 0001\n\n{\"subject\":\"main to other\",\"n\":1}";

fn addr(bi: u32) -> BookAddress {
    BookAddress {
        sn: "main".into(),
        dn: "other".into(),
        si: "660e1029c5d41cbdf5".into(),
        bi,
    }
}

fn blob(n: usize) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("blob".into(), Value::String("x".repeat(n)));
    m
}

fn assemble(books: &mut Books, pages: &[Vec<u8>]) -> Option<Map<String, Value>> {
    let mut done = None;
    for p in pages {
        let page = Page::parse(p).expect("own page parses");
        if let Some(body) = books.insert(&page).expect("page accepted") {
            assert!(done.is_none(), "completed twice");
            done = Some(body);
        }
    }
    done
}

#[test]
fn captured_page_parses_and_reencodes_identically() {
    let page = Page::parse(CAPTURED).expect("captured page");
    let want = PageHead {
        vn: 0,
        pk: PackKind::Json,
        sn: "main".into(),
        dn: "other".into(),
        si: "660e1029c5d41cbdf5".into(),
        bi: 1,
        pn: 0,
        pc: 1,
    };
    assert_eq!(page.head, want);
    let body = decode_body(page.head.pk, page.body).expect("body");
    assert_eq!(body.get("subject"), Some(&Value::from("main to other")));
    assert_eq!(body.get("n"), Some(&Value::from(1)));
    let pages = paginate(&addr(1), PackKind::Json, &body).expect("paginate");
    assert_eq!(pages, vec![CAPTURED.to_vec()]);
    assert_eq!(CAPTURED.len(), 112);
}

#[test]
fn reference_pagination_of_a_200000_byte_blob() {
    let pages = paginate(&addr(1), PackKind::Json, &blob(200_000)).expect("paginate");
    let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
    assert_eq!(sizes, [65533, 65533, 65533, 3728]);
    for (n, p) in pages.iter().enumerate() {
        let head = Page::parse(p).expect("page").head;
        assert_eq!((head.pn as usize, head.pc), (n, 4));
    }
    let last = Page::parse(pages.last().expect("last")).expect("page");
    assert!(String::from_utf8_lossy(&pages[3][..80]).contains("pn 0003\npc 0004\n\n"));
    assert!(last.body.ends_with(b"xx\"}"));
    let mut books = Books::default();
    assert_eq!(assemble(&mut books, &pages), Some(blob(200_000)));
    assert_eq!((books.open_books(), books.open_bytes()), (0, 0));
}

#[test]
fn page_boundary_is_the_whole_datagram() {
    // {"blob":"..."} is 11 bytes plus the blob; the head is 79 bytes.
    let fits = MAX_PAGE_SIZE - 79 - 11;
    let one = paginate(&addr(1), PackKind::Json, &blob(fits)).expect("fits");
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].len(), MAX_PAGE_SIZE);
    let two = paginate(&addr(1), PackKind::Json, &blob(fits + 1)).expect("two");
    // 65457 body bytes: a chunk of 65454, then 3 bytes after a 79-byte head.
    assert_eq!(two.iter().map(Vec::len).collect::<Vec<_>>(), [65533, 82]);
}

#[test]
fn empty_mapping_is_an_empty_body() {
    let pages = paginate(&addr(7), PackKind::Json, &Map::new()).expect("paginate");
    assert_eq!(
        pages,
        vec![b"ri RAET\nvn 0\npk 0\nsn main\ndn other\nsi 660e1029c5d41cbdf5\nbi 7\npn 0000\npc 0001\n\n".to_vec()]
    );
    let page = Page::parse(&pages[0]).expect("parse");
    assert_eq!(
        Books::default().insert(&page).expect("ok"),
        Some(Map::new())
    );
}

#[test]
fn bodies_are_python_compact_ascii_json() {
    let mut body = Map::new();
    body.insert("é".into(), Value::from("ü €"));
    body.insert("n".into(), Value::from(1.0));
    let pages = paginate(&addr(1), PackKind::Json, &body).expect("paginate");
    assert!(pages[0].ends_with(br#"{"\u00e9":"\u00fc \u20ac","n":1.0}"#));
}

#[test]
fn hex_fields_are_lowercase_hex() {
    let mut a = addr(0xABCDEF);
    a.si = "0".repeat(18);
    let pages = paginate(&a, PackKind::Json, &Map::new()).expect("paginate");
    assert!(pages[0].windows(10).any(|w| w == b"\nbi abcdef"));
}

#[test]
fn missing_fields_take_reference_defaults() {
    let page = Page::parse(b"ri RAET\nsn a\ndn b\n\n{}").expect("parse");
    assert_eq!(page.head.si, DEFAULT_SID);
    assert_eq!((page.head.bi, page.head.pn, page.head.pc), (0, 0, 1));
}

#[test]
fn malformed_pages_are_typed_errors() {
    let cases: &[(&[u8], &str)] = &[
        (b"", "Empty"),
        (b"ri RAEX\nvn 0\n\n", "NotRaet"),
        (b"ri RAET\nvn 0\n", "NotRaet"),
        (b"ri RAET\nvn 0\nxx 1\n\n", "UnknownField"),
        (b"ri RAET\nvn 0\nvn 0\n\n", "DuplicateField"),
        (b"ri RAET\nvn 0\nbi 1 2\n\n", "BadLine"),
        (b"ri RAET\nvn 0\nbi\n\n", "BadLine"),
        (b"ri RAET\nbi 0x1\n\n", "BadField"),
        (b"ri RAET\nbi 123456789\n\n", "BadField"),
        (b"ri RAET\npn \n\n", "BadField"),
        (b"ri RAET\npk 2\n\n", "UnknownPackKind"),
        (b"ri RAET\npn 0004\npc 0004\n\n", "BadPageNumber"),
    ];
    for (bytes, want) in cases {
        let got = format!("{:?}", Page::parse(bytes));
        assert!(got.starts_with(&format!("Err({want}")), "{bytes:?}: {got}");
    }
    let too_big = [b"ri RAET\n\n".as_slice(), &[b' '; MAX_PAGE_SIZE]].concat();
    assert!(matches!(
        Page::parse(&too_big),
        Err(LaneError::PageTooLarge(_))
    ));
}

#[test]
fn bodies_must_be_json_mappings() {
    let mut books = Books::default();
    for body in [&b"[1,2]"[..], b"{", b"\xff", b"1"] {
        let bytes = [&b"ri RAET\nsn a\ndn b\n\n"[..], body].concat();
        let page = Page::parse(&bytes).expect("head");
        assert!(
            matches!(books.insert(&page), Err(LaneError::BadBody(_))),
            "{body:?}"
        );
    }
    let msgpack = Page::parse(b"ri RAET\npk 1\nsn a\ndn b\n\n\x80").expect("head");
    assert!(matches!(
        books.insert(&msgpack),
        Err(LaneError::UnsupportedPackKind(1))
    ));
    assert_eq!(books.stats().completed, 0);
}

#[test]
fn book_without_first_page_is_dropped() {
    let pages = paginate(&addr(1), PackKind::Json, &blob(150_000)).expect("paginate");
    let mut books = Books::default();
    for p in &pages[1..] {
        let page = Page::parse(p).expect("parse");
        assert!(matches!(
            books.insert(&page),
            Err(LaneError::MissedFirstPage { .. })
        ));
    }
    assert_eq!(books.stats().missed_first_page, 2);
    assert_eq!(books.open_books(), 0);
}

#[test]
fn newer_session_drops_open_books_of_the_same_yard() {
    let old = paginate(&addr(1), PackKind::Json, &blob(150_000)).expect("old");
    let mut other_yard = addr(1);
    other_yard.sn = "third".into();
    let third = paginate(&other_yard, PackKind::Json, &blob(150_000)).expect("third");
    let mut restarted = addr(1);
    restarted.si = "660e1029c5d41cbdf6".into();
    let new = paginate(&restarted, PackKind::Json, &blob(100)).expect("new");
    let mut books = Books::default();
    for p in [&old[0], &third[0]] {
        assert_eq!(
            books.insert(&Page::parse(p).expect("parse")).expect("ok"),
            None
        );
    }
    assert_eq!(books.open_books(), 2);
    let got = books
        .insert(&Page::parse(&new[0]).expect("parse"))
        .expect("ok");
    assert_eq!(got, Some(blob(100)));
    assert_eq!(books.stats().stale_books, 1);
    assert_eq!(books.open_books(), 1, "only the other yard's book stays");
    let late = Page::parse(&old[1]).expect("parse");
    assert!(matches!(
        books.insert(&late),
        Err(LaneError::MissedFirstPage { .. })
    ));
}

#[test]
fn open_books_are_bounded_in_count() {
    let limits = BookLimits {
        max_open_books: 3,
        max_open_bytes: usize::MAX,
    };
    let mut books = Books::new(limits);
    let all: Vec<Vec<Vec<u8>>> = (1..=5)
        .map(|bi| paginate(&addr(bi), PackKind::Json, &blob(70_000)).expect("paginate"))
        .collect();
    for pages in &all {
        books
            .insert(&Page::parse(&pages[0]).expect("parse"))
            .expect("first page");
    }
    assert_eq!(books.open_books(), 3);
    assert_eq!(books.stats().evicted_books, 2);
    let evicted = Page::parse(&all[0][1]).expect("parse");
    assert!(books.insert(&evicted).is_err(), "oldest book was evicted");
    let kept = Page::parse(&all[4][1]).expect("parse");
    assert_eq!(books.insert(&kept).expect("ok"), Some(blob(70_000)));
}

#[test]
fn open_books_are_bounded_in_bytes() {
    let limits = BookLimits {
        max_open_books: 100,
        max_open_bytes: 150_000,
    };
    let mut books = Books::new(limits);
    let a = paginate(&addr(1), PackKind::Json, &blob(200_000)).expect("a");
    let b = paginate(&addr(2), PackKind::Json, &blob(100_000)).expect("b");
    books
        .insert(&Page::parse(&a[0]).expect("parse"))
        .expect("a0");
    books
        .insert(&Page::parse(&a[1]).expect("parse"))
        .expect("a1");
    let err = books.insert(&Page::parse(&a[2]).expect("parse"));
    assert!(matches!(err, Err(LaneError::BookTooLarge(_))), "{err:?}");
    assert_eq!(books.stats().oversize_books, 1);
    assert_eq!((books.open_books(), books.open_bytes()), (0, 0));
    books
        .insert(&Page::parse(&a[0]).expect("parse"))
        .expect("a0 again");
    books
        .insert(&Page::parse(&b[0]).expect("parse"))
        .expect("b0");
    assert_eq!((books.stats().evicted_books, books.open_books()), (0, 2));
    assert_eq!(
        books
            .insert(&Page::parse(&b[1]).expect("parse"))
            .expect("b1 evicts a"),
        Some(blob(100_000))
    );
    assert_eq!((books.stats().evicted_books, books.open_books()), (1, 0));
    assert_eq!(books.open_bytes(), 0);
}

#[test]
fn page_count_mismatch_and_repeated_pages() {
    let pages = paginate(&addr(1), PackKind::Json, &blob(150_000)).expect("paginate");
    let mut books = Books::default();
    books
        .insert(&Page::parse(&pages[0]).expect("parse"))
        .expect("p0");
    books
        .insert(&Page::parse(&pages[0]).expect("parse"))
        .expect("p0 again");
    let mut outside = Page::parse(&pages[1]).expect("parse");
    outside.head.pn = 3;
    assert!(matches!(
        books.insert(&outside),
        Err(LaneError::BadPageNumber { pn: 3, pc: 3 })
    ));
    let mut odd = Page::parse(&pages[1]).expect("parse");
    odd.head.pc = 9;
    assert!(matches!(
        books.insert(&odd),
        Err(LaneError::PageCountMismatch { pc: 9, expected: 3 })
    ));
    books
        .insert(&Page::parse(&pages[1]).expect("parse"))
        .expect("p1");
    let done = books
        .insert(&Page::parse(&pages[2]).expect("parse"))
        .expect("p2");
    assert_eq!(done, Some(blob(150_000)));
}

#[test]
fn session_ids_look_like_the_reference() {
    let mut rng = rand::thread_rng();
    let micros = 0x0005_f312_3456_789a_u64;
    let a = session_id(micros, &mut rng);
    let b = session_id(micros, &mut rng);
    assert_eq!(a.len(), SID_LEN);
    assert!(a.starts_with(&format!("{micros:x}")));
    assert!(a
        .bytes()
        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    assert_ne!(a, b, "random tail");
}

#[test]
fn unwritable_heads_are_errors() {
    let mut a = addr(1);
    a.sn = "two words".into();
    assert!(matches!(
        paginate(&a, PackKind::Json, &Map::new()),
        Err(LaneError::BadField("sn"))
    ));
    let mut a = addr(1);
    a.si = "x".repeat(19);
    assert!(matches!(
        paginate(&a, PackKind::Json, &Map::new()),
        Err(LaneError::BadField("si"))
    ));
    let mut a = addr(1);
    a.dn = "é€".into();
    assert!(paginate(&a, PackKind::Json, &Map::new()).is_err());
}

fn name() -> impl Strategy<Value = String> {
    "[!-~&&[^.]]{1,20}"
}

fn head() -> impl Strategy<Value = PageHead> {
    (
        name(),
        name(),
        "[0-9a-f]{1,18}",
        any::<u32>(),
        1u32..=0xFFFF,
        any::<u32>(),
    )
        .prop_map(|(sn, dn, si, bi, pc, pn)| PageHead {
            vn: 0,
            pk: PackKind::Json,
            sn,
            dn,
            si,
            bi,
            pn: if pc > 1 { pn % pc } else { 0 },
            pc,
        })
}

fn body() -> impl Strategy<Value = Map<String, Value>> {
    proptest::collection::vec(("[a-z]{1,8}", any::<i64>(), "\\PC{0,30}"), 0..6).prop_map(|kv| {
        let mut m = Map::new();
        for (k, n, s) in kv {
            m.insert(k.clone(), Value::from(n));
            m.insert(format!("{k}_s"), Value::from(s));
        }
        m
    })
}

proptest! {
    #[test]
    fn head_round_trip(h in head(), tail in proptest::collection::vec(any::<u8>(), 0..40)) {
        let mut bytes = h.to_bytes().expect("encodable");
        let head_len = bytes.len();
        bytes.extend_from_slice(&tail);
        let page = Page::parse(&bytes).expect("parses");
        prop_assert_eq!(&page.head, &h);
        prop_assert_eq!(page.body, &tail[..]);
        prop_assert_eq!(page.head.to_bytes().expect("again").len(), head_len);
    }

    #[test]
    fn book_round_trip(b in body(), pad in 0usize..200_000, bi in 1u32..) {
        let mut b = b;
        b.insert("pad".into(), Value::String("y".repeat(pad)));
        let pages = paginate(&addr(bi), PackKind::Json, &b).expect("paginate");
        prop_assert!(pages.iter().all(|p| p.len() <= MAX_PAGE_SIZE));
        let mut books = Books::default();
        prop_assert_eq!(assemble(&mut books, &pages), Some(b));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut books = Books::new(BookLimits { max_open_books: 2, max_open_bytes: 1000 });
        if let Ok(page) = Page::parse(&bytes) {
            let _ = books.insert(&page);
        }
    }

    #[test]
    fn mutated_pages_never_panic(
        h in head(),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
    ) {
        let mut books = Books::new(BookLimits { max_open_books: 2, max_open_bytes: 1000 });
        let mut bytes = h.to_bytes().expect("encodable");
        bytes.extend_from_slice(b"{\"a\":1}");
        for (at, byte) in edits {
            let at = at % bytes.len();
            bytes[at] = byte;
            if let Ok(page) = Page::parse(&bytes) {
                let _ = books.insert(&page);
            }
        }
    }
}

#[test]
fn a_packed_book_goes_in_large_pages_and_comes_back_untouched() {
    let packed: Vec<u8> = (0..1_500_000u32).map(|i| (i % 251) as u8).collect();
    let max = packed_page_size(4 * 1024 * 1024);
    assert_eq!(max, MAX_PACKED_PAGE_SIZE);
    let pages = paginate_bytes(&addr(3), PackKind::Msgpack, &packed, max).expect("paginate");
    assert_eq!(pages.len(), 3, "1.5 MB in pages of 512 KiB");
    assert!(pages.iter().all(|p| p.len() <= MAX_PACKED_PAGE_SIZE));
    assert!(pages.iter().any(|p| p.len() > MAX_PAGE_SIZE));
    let mut books = Books::default();
    let mut done = None;
    for p in &pages {
        let page = Page::parse(p).expect("a packed page parses");
        assert_eq!(page.head.pk, PackKind::Msgpack);
        if let Some(body) = books.insert_body(&page).expect("accepted") {
            done = Some(body);
        }
    }
    assert_eq!(done, Some(Body::Packed(packed)));
    // `insert` (mappings only) refuses a packed book as before.
    let one = paginate_bytes(&addr(4), PackKind::Msgpack, b"\x80", max).expect("paginate");
    let page = Page::parse(&one[0]).expect("parse");
    assert!(matches!(
        books.insert(&page),
        Err(LaneError::UnsupportedPackKind(1))
    ));
}

#[test]
fn json_pages_stay_within_the_reference_page_size() {
    let body = blob(200_000);
    let packed = encode_body(PackKind::Json, &body).expect("encode");
    let large =
        paginate_bytes(&addr(5), PackKind::Json, &packed, MAX_PACKED_PAGE_SIZE).expect("paginate");
    assert_eq!(
        large,
        paginate(&addr(5), PackKind::Json, &body).expect("paginate")
    );
    assert!(large.iter().all(|p| p.len() <= MAX_PAGE_SIZE));
    // A small send buffer gives reference-sized pages, never smaller.
    assert_eq!(packed_page_size(8192), MAX_PAGE_SIZE);
    assert_eq!(packed_page_size(300_000), 150_000);
}

#[test]
fn only_packed_pages_may_exceed_the_reference_page_size() {
    let head = b"ri RAET\nsn a\ndn b\npk 0\n\n";
    let big_json = [&head[..], &vec![b' '; MAX_PAGE_SIZE]].concat();
    assert!(matches!(
        Page::parse(&big_json),
        Err(LaneError::PageTooLarge(_))
    ));
    let head = b"ri RAET\nsn a\ndn b\npk 1\n\n";
    let big_packed = [&head[..], &vec![0u8; 300_000]].concat();
    assert_eq!(
        Page::parse(&big_packed).expect("packed").body.len(),
        300_000
    );
    let too_big = [&head[..], &vec![0u8; MAX_PACKED_PAGE_SIZE]].concat();
    assert!(matches!(
        Page::parse(&too_big),
        Err(LaneError::PageTooLarge(_))
    ));
}
