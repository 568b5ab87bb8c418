//! Lane pages: the input is datagrams separated by NUL bytes; each is parsed
//! and fed to a book assembler with small bounds. Accepted heads re-encode to
//! heads that parse back equal; the bounds always hold.
#![no_main]

use libfuzzer_sys::fuzz_target;
use raet_proto::lane::page::{BookLimits, Books, Page};

const LIMITS: BookLimits = BookLimits {
    max_open_books: 3,
    max_open_bytes: 2048,
};

fuzz_target!(|data: &[u8]| {
    let mut books = Books::new(LIMITS);
    for datagram in data.split(|&b| b == 0) {
        let Ok(page) = Page::parse(datagram) else {
            continue;
        };
        if let Ok(mut again) = page.head.to_bytes() {
            again.extend_from_slice(page.body);
            let reparsed = Page::parse(&again).expect("our own page parses");
            assert_eq!(reparsed, page);
        }
        let _ = books.insert(&page);
        assert!(books.open_books() <= LIMITS.max_open_books);
        assert!(books.open_bytes() <= LIMITS.max_open_bytes);
    }
});
