//! Strings: `length` registers of two bytes each, such as serial numbers and model names.
//! Read as text with the trailing NULs and spaces that pad it removed; written padded with
//! NULs.

use super::{ByteOrder, EncodeError};

/// The text of `words`. Bytes that are not UTF-8 (rare, and then mostly a Latin-1 degree
/// sign) are shown as U+FFFD rather than refused: the rest of the text still says something.
pub(super) fn decode(words: &[u16], byte_order: ByteOrder) -> String {
    let bytes: Vec<u8> = words
        .iter()
        .flat_map(|w| byte_order.word(*w).to_be_bytes())
        .collect();
    let text = String::from_utf8_lossy(&bytes);
    text.trim_end_matches(['\0', ' ']).to_owned()
}

/// The `length` words of `text`, padded with NULs; a text longer than they hold is refused,
/// never cut.
pub(super) fn encode(
    text: &str,
    length: u16,
    byte_order: ByteOrder,
) -> Result<Vec<u16>, EncodeError> {
    let most = 2 * usize::from(length);
    if text.len() > most {
        return Err(EncodeError::TooLong {
            bytes: text.len(),
            most,
        });
    }
    let mut bytes = text.as_bytes().to_vec();
    bytes.resize(most, 0);
    Ok(bytes
        .chunks_exact(2)
        .map(|pair| byte_order.word(u16::from_be_bytes([pair[0], pair[1]])))
        .collect())
}
