//! The Lua scripts that make every queue operation atomic.

use std::sync::LazyLock;

use redis::Script;

const COMMON: &str = include_str!("../scripts/common.lua");

fn script(body: &str) -> Script {
    Script::new(&format!("{COMMON}\n{body}"))
}

pub(crate) static PUSH: LazyLock<Script> =
    LazyLock::new(|| script(include_str!("../scripts/push.lua")));
pub(crate) static POP: LazyLock<Script> =
    LazyLock::new(|| script(include_str!("../scripts/pop.lua")));
pub(crate) static NACK: LazyLock<Script> =
    LazyLock::new(|| script(include_str!("../scripts/nack.lua")));
pub(crate) static DEPTH: LazyLock<Script> =
    LazyLock::new(|| script(include_str!("../scripts/depth.lua")));
