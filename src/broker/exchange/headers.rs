//! TEMPORARY stub (helper writes the real one).
use amq_protocol::types::FieldTable;
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XMatch {
    All,
    Any,
    AllWithX,
    AnyWithX,
}
pub fn parse_x_match(_args: &FieldTable) -> Result<XMatch, String> {
    Ok(XMatch::All)
}
pub fn matches(_mode: XMatch, _b: &FieldTable, _h: Option<&FieldTable>) -> bool {
    false
}
