//! Compact FIX 4.4 data dictionary and message validation, following the checks and
//! order of QuickFIX's `DataDictionary::validate` with default settings.
//!
//! Coverage: session messages (0,1,2,3,4,5,A), inbound application messages
//! D,F,G,H,q,V,x,d and outbound 8,9,r,W,X,y,j. Other valid FIX 4.4 MsgTypes are
//! accepted structurally (tag numbers and formats checked, membership not).
//! Tags 1..=956 are treated as defined FIX 4.4 tags (untyped ones as strings);
//! anything else, user-defined 5000+ included, is an invalid tag number.

use crate::codec::Field;

/// Field value types checked by the dictionary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    /// Signed integer.
    Int,
    /// Non-negative integer (SeqNum, Length, NumInGroup).
    UInt,
    /// Decimal (Price, Qty, Amt, float); no leading `+`.
    Float,
    /// Single character.
    Char,
    /// `Y` or `N`.
    Boolean,
    /// `YYYYMMDD-HH:MM:SS[.sss]`.
    UtcTimestamp,
    /// `YYYYMMDD`.
    Date,
    /// Anything non-empty.
    Str,
}

/// Highest standard FIX 4.4 tag number accepted.
pub const MAX_FIX44_TAG: u32 = 956;

/// Standard header tags (besides 8, 9, 35 which are positional).
pub const HEADER_TAGS: &[u32] = &[
    8, 9, 35, 34, 43, 49, 50, 52, 56, 57, 90, 91, 97, 115, 116, 122, 128, 129, 142, 143, 144, 145,
    212, 213, 347, 369, 627, 628, 629, 630,
];
/// Trailer tags.
pub const TRAILER_TAGS: &[u32] = &[10, 89, 93];
/// Required header tags, in the order QuickFIX checks them (ascending).
pub const HEADER_REQUIRED: &[u32] = &[8, 9, 34, 35, 49, 52, 56];

/// Is `tag` a header field?
pub fn is_header(tag: u32) -> bool {
    HEADER_TAGS.contains(&tag)
}
/// Is `tag` a trailer field?
pub fn is_trailer(tag: u32) -> bool {
    TRAILER_TAGS.contains(&tag)
}

/// Type of a defined tag.
pub fn field_type(tag: u32) -> FieldType {
    use FieldType::*;
    match tag {
        7 | 16 | 34 | 36 | 45 | 9 | 10 | 108 | 369 | 789 => UInt,
        // NumInGroup and Length fields.
        73 | 78 | 90 | 93 | 95 | 124 | 136 | 146 | 199 | 212 | 215 | 232 | 267 | 268 | 295
        | 296 | 298 | 348 | 350 | 351 | 352 | 354 | 356 | 358 | 360 | 362 | 364 | 382 | 384
        | 386 | 394 | 398 | 407 | 415 | 418 | 420 | 428 | 429 | 445 | 453 | 454 | 473 | 518
        | 520 | 534 | 552 | 555 | 558 | 576 | 580 | 603 | 604 | 618 | 621 | 627 | 711 | 733
        | 735 | 753 | 757 | 768 | 802 | 864 | 870 | 886 | 887 | 897 | 936 => UInt,
        14 | 31 | 32 | 38 | 44 | 6 | 99 | 110 | 111 | 132 | 133 | 134 | 135 | 140 | 151 | 152
        | 153 | 188 | 189 | 190 | 191 | 194 | 195 | 202 | 211 | 270 | 271 | 332 | 333 | 387
        | 424 | 425 | 426 | 516 | 640 | 662 | 663 | 730 | 731 | 732 | 799 | 810 | 860 | 861 => {
            Float
        }
        12 | 119 | 120 | 381 | 118 | 137 | 155 | 157 | 159 | 230 | 231 | 236 | 237 | 238 | 223 => {
            if tag == 120 {
                Str
            } else {
                Float
            }
        }
        4 | 13 | 15 | 21 | 22 | 25 | 27 | 28 | 39 | 40 | 47 | 54 | 59 | 63 | 71 | 77 | 81 | 94
        | 98 | 102 | 103 | 104 | 150 | 156 | 160 | 165 | 263 | 265 | 266 | 269 | 279 | 280
        | 281 | 285 | 286 | 291 | 292 | 317 | 373 | 380 | 434 | 530 | 531 | 532 | 559 | 560 => {
            match tag {
                98 | 102 | 103 | 263 | 265 | 380 | 373 | 530 | 531 | 532 | 559 | 560 | 434
                | 285 | 286 | 279 | 281 => Int,
                _ => Char,
            }
        }
        43 | 97 | 114 | 121 | 123 | 130 | 141 | 208 | 264 => {
            if tag == 264 {
                UInt
            } else {
                Boolean
            }
        }
        52 | 60 | 122 | 126 | 168 | 432 | 273 | 483 | 443 | 64 => match tag {
            432 | 64 => Date,
            273 => Str,
            _ => UtcTimestamp,
        },
        75 | 200 | 541 | 272 => {
            if tag == 200 {
                Str
            } else {
                Date
            }
        }
        _ => Str,
    }
}

/// Allowed values for enumerated tags that the gateway checks.
pub fn enum_values(tag: u32) -> Option<&'static [&'static str]> {
    Some(match tag {
        4 | 54 => match tag {
            4 => &["B", "S", "X", "T"],
            _ => &[
                "1", "2", "3", "4", "5", "6", "7", "8", "9", "A", "B", "C", "D", "E", "F", "G",
            ],
        },
        21 => &["1", "2", "3"],
        40 => &[
            "1", "2", "3", "4", "6", "7", "8", "9", "D", "E", "G", "I", "J", "K", "L", "M", "P",
        ],
        59 => &["0", "1", "2", "3", "4", "5", "6", "7"],
        98 => &["0", "1", "2", "3", "4", "5", "6"],
        150 => &[
            "0", "3", "4", "5", "6", "7", "8", "9", "A", "B", "C", "D", "E", "F", "G", "H", "I",
        ],
        39 => &[
            "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "A", "B", "C", "D", "E",
        ],
        263 => &["0", "1", "2"],
        265 => &["0", "1"],
        269 => &[
            "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "A", "B", "C",
        ],
        279 => &["0", "1", "2"],
        559 => &["0", "1", "2", "3", "4"],
        530 => &["1", "2", "3", "4", "5", "6", "7"],
        167 => &[
            "EUSUPRA",
            "FAC",
            "FADN",
            "FAMCC",
            "FAMCL",
            "FAMCO",
            "FAMCS",
            "FHLB",
            "FHLMC",
            "FNMA",
            "GNMA",
            "POSTEUR",
            "PRMN",
            "RVLV",
            "RVLVTRM",
            "TBA",
            "TERM",
            "BN",
            "CB",
            "CD",
            "CMO",
            "COMMERCIAL",
            "CORP",
            "CP",
            "CPP",
            "CS",
            "DEFLTED",
            "DINP",
            "DN",
            "EUCD",
            "EUCORP",
            "EUCP",
            "EUSOV",
            "FOR",
            "FORWARD",
            "FUT",
            "GO",
            "GOVT",
            "IET",
            "LQN",
            "MBS",
            "MF",
            "MIO",
            "MLEG",
            "MPO",
            "MPP",
            "MPT",
            "MT",
            "MUNI",
            "NONE",
            "OPT",
            "PEF",
            "PFAND",
            "PN",
            "PS",
            "PZFJ",
            "RAN",
            "REPO",
            "RP",
            "RVRP",
            "SL",
            "SPCLA",
            "SPCLO",
            "SPCLT",
            "STN",
            "STRUCT",
            "SWING",
            "TAN",
            "TBILL",
            "TBOND",
            "TCAL",
            "TD",
            "TECP",
            "TINT",
            "TIPS",
            "TNOTE",
            "TPRN",
            "TRAN",
            "UST",
            "USTB",
            "VRDN",
            "WAR",
            "WITHDRN",
            "XCN",
            "XLINKD",
            "YANK",
            "YCD",
            "?",
            "ABS",
            "BRADY",
            "TRDR",
            "ASSET",
            "LOAN",
            "FXNDF",
            "FXSPOT",
            "FXFWD",
            "FXSWAP",
        ],
        _ => return None,
    })
}

/// Every FIX 4.4 MsgType.
pub const MSG_TYPES: &[&str] = &[
    "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "A", "B", "C", "D", "E", "F", "G", "H", "J",
    "K", "L", "M", "N", "P", "Q", "R", "S", "T", "V", "W", "X", "Y", "Z", "a", "b", "c", "d", "e",
    "f", "g", "h", "i", "j", "k", "l", "m", "n", "o", "p", "q", "r", "s", "t", "u", "v", "w", "x",
    "y", "z", "AA", "AB", "AC", "AD", "AE", "AF", "AG", "AH", "AI", "AJ", "AK", "AL", "AM", "AN",
    "AO", "AP", "AQ", "AR", "AS", "AT", "AU", "AV", "AW", "AX", "AY", "AZ", "BA", "BB", "BC", "BD",
    "BE", "BF", "BG", "BH",
];

/// A repeating group: count tag, delimiter (first field of each entry), member tags.
#[derive(Debug)]
pub struct GroupDef {
    /// NumInGroup tag.
    pub count: u32,
    /// First field of every entry.
    pub delim: u32,
    /// All member tags (delimiter included).
    pub members: &'static [u32],
}

/// Definition of one message type.
#[derive(Debug)]
pub struct MsgDef {
    /// MsgType (35).
    pub msg_type: &'static str,
    /// Required body tags, ascending.
    pub required: &'static [u32],
    /// Allowed body tags outside groups (group count tags included).
    pub fields: &'static [u32],
    /// Repeating groups.
    pub groups: &'static [GroupDef],
}

const G_PARTIES: GroupDef = GroupDef {
    count: 453,
    delim: 448,
    members: &[448, 447, 452, 802, 523, 803],
};
const G_SECALTID: GroupDef = GroupDef {
    count: 454,
    delim: 455,
    members: &[455, 456],
};
const G_TRADSES: GroupDef = GroupDef {
    count: 386,
    delim: 336,
    members: &[336, 625],
};
const G_ALLOC: GroupDef = GroupDef {
    count: 78,
    delim: 79,
    members: &[79, 661, 736, 467, 539, 524, 525, 538, 804, 545, 805, 80],
};
const G_RELSYM: GroupDef = GroupDef {
    count: 146,
    delim: 55,
    members: &[
        55, 65, 48, 22, 454, 455, 456, 460, 461, 167, 762, 200, 541, 201, 224, 225, 239, 226, 227,
        228, 255, 543, 470, 471, 472, 240, 202, 947, 206, 231, 223, 207, 106, 348, 349, 107, 350,
        351, 691, 667, 875, 876, 864, 865, 866, 867, 868, 873, 874, 711, 311, 15, 555, 600,
    ],
};
const G_MDTYPES: GroupDef = GroupDef {
    count: 267,
    delim: 269,
    members: &[269],
};
const G_MDENTRIES: GroupDef = GroupDef {
    count: 268,
    delim: 269,
    members: &[
        269, 270, 15, 271, 272, 273, 274, 275, 336, 625, 276, 277, 282, 283, 284, 286, 59, 432,
        126, 110, 18, 287, 37, 299, 288, 289, 290, 346, 811, 279, 278, 280, 55, 58, 354, 355,
    ],
};
const G_INCMDENTRIES: GroupDef = GroupDef {
    count: 268,
    delim: 279,
    members: &[
        279, 285, 269, 278, 280, 55, 48, 22, 167, 270, 15, 271, 272, 273, 274, 275, 336, 625, 276,
        277, 282, 283, 284, 286, 59, 432, 126, 110, 18, 287, 37, 299, 288, 289, 290, 346, 811, 58,
        354, 355,
    ],
};

/// Instrument component (without its groups' members), reused by many messages.
macro_rules! instrument {
    () => {
        [
            55, 65, 48, 22, 454, 460, 461, 167, 762, 200, 541, 201, 224, 225, 239, 226, 227, 228,
            255, 543, 470, 471, 472, 240, 202, 947, 206, 231, 223, 207, 106, 348, 349, 107, 350,
            351, 691, 667, 875, 876, 864, 873, 874,
        ]
    };
}

const fn concat<const A: usize, const B: usize, const C: usize>(
    a: [u32; A],
    b: [u32; B],
) -> [u32; C] {
    let mut out = [0u32; C];
    let mut i = 0;
    while i < A {
        out[i] = a[i];
        i += 1;
    }
    let mut j = 0;
    while j < B {
        out[A + j] = b[j];
        j += 1;
    }
    out
}

const ORDER_COMMON: [u32; 93] = [
    11, 526, 583, 229, 75, 1, 660, 581, 589, 590, 591, 70, 63, 64, 544, 635, 21, 18, 110, 111, 100,
    386, 81, 711, 140, 54, 114, 60, 232, 854, 38, 152, 516, 468, 469, 40, 423, 44, 99, 218, 220,
    221, 222, 662, 663, 699, 761, 235, 236, 701, 696, 697, 698, 15, 376, 377, 23, 117, 59, 168,
    432, 126, 427, 12, 13, 479, 497, 528, 529, 582, 121, 120, 775, 58, 354, 355, 193, 192, 640, 77,
    203, 210, 211, 388, 389, 494, 453, 78, 41, 37, 586, 198, 66,
];
const INSTRUMENT: [u32; 43] = instrument!();
const ORDER_FIELDS: [u32; 136] = concat(ORDER_COMMON, INSTRUMENT);
const ORDER_GROUPS: &[GroupDef] = &[G_PARTIES, G_SECALTID, G_TRADSES, G_ALLOC];
const EXEC_EXTRA: [u32; 40] = [
    37, 17, 150, 39, 151, 14, 6, 31, 32, 527, 19, 20, 636, 548, 549, 550, 103, 378, 84, 442, 548,
    880, 797, 851, 30, 29, 1057, 136, 137, 138, 139, 119, 155, 156, 157, 158, 159, 439, 440, 382,
];
const EXEC_FIELDS: [u32; 176] = concat(ORDER_FIELDS, EXEC_EXTRA);
const SEC_DEF_EXTRA: [u32; 10] = [320, 322, 323, 15, 58, 354, 355, 336, 625, 561];
const SEC_DEF_FIELDS: [u32; 53] = concat(INSTRUMENT, SEC_DEF_EXTRA);

/// The message definitions.
pub static MESSAGES: &[MsgDef] = &[
    MsgDef {
        msg_type: "0",
        required: &[],
        fields: &[112],
        groups: &[],
    },
    MsgDef {
        msg_type: "1",
        required: &[112],
        fields: &[112],
        groups: &[],
    },
    MsgDef {
        msg_type: "2",
        required: &[7, 16],
        fields: &[7, 16],
        groups: &[],
    },
    MsgDef {
        msg_type: "3",
        required: &[45],
        fields: &[45, 371, 372, 373, 58, 354, 355],
        groups: &[],
    },
    MsgDef {
        msg_type: "4",
        required: &[36],
        fields: &[123, 36],
        groups: &[],
    },
    MsgDef {
        msg_type: "5",
        required: &[],
        fields: &[58, 354, 355],
        groups: &[],
    },
    MsgDef {
        msg_type: "A",
        required: &[98, 108],
        fields: &[98, 108, 95, 96, 141, 789, 383, 384, 372, 385, 464, 553, 554],
        groups: &[],
    },
    MsgDef {
        msg_type: "D",
        required: &[11, 40, 54, 60],
        fields: &ORDER_FIELDS,
        groups: ORDER_GROUPS,
    },
    MsgDef {
        msg_type: "F",
        required: &[11, 41, 54, 60],
        fields: &ORDER_FIELDS,
        groups: ORDER_GROUPS,
    },
    MsgDef {
        msg_type: "G",
        required: &[11, 40, 41, 54, 60],
        fields: &ORDER_FIELDS,
        groups: ORDER_GROUPS,
    },
    MsgDef {
        msg_type: "H",
        required: &[11, 54],
        fields: &ORDER_FIELDS,
        groups: ORDER_GROUPS,
    },
    MsgDef {
        msg_type: "q",
        required: &[11, 60, 530],
        fields: &concat::<93, 4, 97>(ORDER_COMMON, [530, 336, 625, 460]),
        groups: ORDER_GROUPS,
    },
    MsgDef {
        msg_type: "V",
        required: &[262, 263, 264],
        fields: &[262, 263, 264, 265, 266, 286, 146, 267, 546, 547, 815, 386],
        groups: &[G_MDTYPES, G_RELSYM, G_TRADSES],
    },
    MsgDef {
        msg_type: "x",
        required: &[320, 559],
        fields: &concat::<43, 9, 52>(INSTRUMENT, [320, 559, 15, 58, 354, 355, 336, 625, 263]),
        groups: &[G_SECALTID],
    },
    MsgDef {
        msg_type: "d",
        required: &[320, 322, 323],
        fields: &SEC_DEF_FIELDS,
        groups: &[G_SECALTID],
    },
    MsgDef {
        msg_type: "8",
        required: &[6, 14, 17, 37, 39, 54, 150, 151],
        fields: &EXEC_FIELDS,
        groups: ORDER_GROUPS,
    },
    MsgDef {
        msg_type: "9",
        required: &[11, 37, 39, 41, 434],
        fields: &[
            37, 198, 11, 526, 41, 39, 66, 586, 1, 660, 581, 102, 434, 60, 58, 354, 355, 109, 76,
        ],
        groups: &[],
    },
    MsgDef {
        msg_type: "r",
        required: &[37, 530, 531],
        fields: &[
            11, 526, 37, 198, 530, 531, 532, 533, 60, 54, 58, 354, 355, 336, 625,
        ],
        groups: &[],
    },
    MsgDef {
        msg_type: "W",
        required: &[268],
        fields: &concat::<43, 6, 49>(INSTRUMENT, [262, 268, 291, 292, 813, 387]),
        groups: &[G_SECALTID, G_MDENTRIES],
    },
    MsgDef {
        msg_type: "X",
        required: &[268],
        fields: &[262, 268, 813],
        groups: &[G_INCMDENTRIES],
    },
    MsgDef {
        msg_type: "y",
        required: &[],
        fields: &[320, 322, 560, 393, 893, 146],
        groups: &[G_RELSYM],
    },
    MsgDef {
        msg_type: "j",
        required: &[372, 380],
        fields: &[45, 372, 379, 380, 58, 354, 355],
        groups: &[],
    },
];

/// Look up a message definition.
pub fn message(msg_type: &[u8]) -> Option<&'static MsgDef> {
    MESSAGES.iter().find(|m| m.msg_type.as_bytes() == msg_type)
}

/// Is `msg_type` a FIX 4.4 MsgType?
pub fn is_valid_msg_type(msg_type: &[u8]) -> bool {
    MSG_TYPES.iter().any(|m| m.as_bytes() == msg_type)
}

/// Is `tag` a defined FIX 4.4 tag?
pub fn is_defined_tag(tag: u32) -> bool {
    (1..=MAX_FIX44_TAG).contains(&tag)
}

/// SessionRejectReason (373) values.
pub mod reason {
    /// Invalid tag number.
    pub const INVALID_TAG: u32 = 0;
    /// Required tag missing.
    pub const REQUIRED_MISSING: u32 = 1;
    /// Tag not defined for this message type.
    pub const NOT_FOR_MSG_TYPE: u32 = 2;
    /// Tag specified without a value.
    pub const NO_VALUE: u32 = 4;
    /// Value is incorrect (out of range) for this tag.
    pub const BAD_VALUE: u32 = 5;
    /// Incorrect data format for value.
    pub const BAD_FORMAT: u32 = 6;
    /// CompID problem.
    pub const COMP_ID: u32 = 9;
    /// SendingTime accuracy problem.
    pub const SENDING_TIME: u32 = 10;
    /// Invalid MsgType.
    pub const INVALID_MSG_TYPE: u32 = 11;
    /// Tag appears more than once.
    pub const REPEATED: u32 = 13;
    /// Tag specified out of required order.
    pub const OUT_OF_ORDER: u32 = 14;
    /// Incorrect NumInGroup count for repeating group.
    pub const GROUP_COUNT: u32 = 16;

    /// The Text (58) QuickFIX sends for a reason.
    pub fn text(reason: u32) -> &'static str {
        match reason {
            0 => "Invalid tag number",
            1 => "Required tag missing",
            2 => "Tag not defined for this message type",
            4 => "Tag specified without a value",
            5 => "Value is incorrect (out of range) for this tag",
            6 => "Incorrect data format for value",
            9 => "CompID problem",
            10 => "SendingTime accuracy problem",
            11 => "Invalid MsgType",
            13 => "Tag appears more than once",
            14 => "Tag specified out of required order",
            16 => "Incorrect NumInGroup count for repeating group",
            _ => "Other",
        }
    }
}

/// A validation failure: SessionRejectReason and RefTagID (as sent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// SessionRejectReason (373).
    pub reason: u32,
    /// RefTagID (371), exactly as the tag was written; `None` for no 371.
    pub ref_tag: Option<Vec<u8>>,
}

impl Invalid {
    fn new(reason: u32, tag: &[u8]) -> Self {
        Invalid {
            reason,
            ref_tag: Some(tag.to_vec()),
        }
    }
    fn num(reason: u32, tag: u32) -> Self {
        Invalid {
            reason,
            ref_tag: Some(tag.to_string().into_bytes()),
        }
    }
}

fn digits(v: &[u8]) -> bool {
    !v.is_empty() && v.iter().all(u8::is_ascii_digit)
}

/// Does `v` have the format of `ty`?
pub fn valid_format(ty: FieldType, v: &[u8]) -> bool {
    match ty {
        FieldType::UInt => digits(v),
        FieldType::Int => digits(v.strip_prefix(b"-").unwrap_or(v)),
        FieldType::Float => {
            let v = v.strip_prefix(b"-").unwrap_or(v);
            let mut parts = v.splitn(2, |&b| b == b'.');
            let int = parts.next().unwrap_or(b"");
            let frac = parts.next();
            let all = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
            match frac {
                None => digits(int),
                Some(f) => all(int) && all(f) && !(int.is_empty() && f.is_empty()),
            }
        }
        FieldType::Char => v.len() == 1,
        FieldType::Boolean => v == b"Y" || v == b"N",
        FieldType::UtcTimestamp => parse_utc_timestamp(v).is_some(),
        FieldType::Date => v.len() == 8 && digits(v),
        FieldType::Str => true,
    }
}

/// Parse `YYYYMMDD-HH:MM:SS[.sss]` into milliseconds since the Unix epoch.
pub fn parse_utc_timestamp(v: &[u8]) -> Option<i64> {
    if !(v.len() == 17 || v.len() == 21) || v[8] != b'-' || v[11] != b':' || v[14] != b':' {
        return None;
    }
    let n = |a: usize, b: usize| -> Option<i64> {
        let s = &v[a..b];
        digits(s).then(|| s.iter().fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0')))
    };
    let (y, mo, d) = (n(0, 4)?, n(4, 6)?, n(6, 8)?);
    let (h, mi, s) = (n(9, 11)?, n(12, 14)?, n(15, 17)?);
    let ms = if v.len() == 21 {
        if v[17] != b'.' {
            return None;
        }
        n(18, 21)?
    } else {
        0
    };
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + h) * 60 + mi) * 60_000 + s * 1000 + ms)
}

/// Format milliseconds since the Unix epoch as `YYYYMMDD-HH:MM:SS.sss`.
pub fn format_utc_timestamp(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}-{:02}:{:02}:{:02}.{:03}",
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000
    )
}

/// Validate a parsed message (fields as sent, `8`,`9`,`35` first, `10` last) the way
/// QuickFIX does: structure (header first) → MsgType → required tags → per field in
/// ascending tag order within header, trailer, body (repeated, empty, format,
/// enum value, tag number, membership, group count).
pub fn validate(fields: &[Field<'_>]) -> Result<(), Invalid> {
    // Structure: header fields must precede body fields.
    let mut in_body = false;
    for f in &fields[3..] {
        if f.tag == 10 {
            break;
        }
        if is_header(f.tag) {
            if in_body {
                return Err(Invalid::new(reason::OUT_OF_ORDER, f.tag_text));
            }
        } else if !is_trailer(f.tag) {
            in_body = true;
        }
    }
    let msg_type = fields[2].value;
    if !is_valid_msg_type(msg_type) {
        return Err(Invalid {
            reason: reason::INVALID_MSG_TYPE,
            ref_tag: None,
        });
    }
    let def = message(msg_type);
    let has = |t: u32| fields.iter().any(|f| f.tag == t);
    for &t in HEADER_REQUIRED {
        if !has(t) {
            return Err(Invalid::num(reason::REQUIRED_MISSING, t));
        }
    }
    if let Some(def) = def {
        for &t in def.required {
            if !has(t) {
                return Err(Invalid::num(reason::REQUIRED_MISSING, t));
            }
        }
    }
    // Split into header / trailer / body, tracking group members.
    let mut header: Vec<&Field> = Vec::new();
    let mut trailer: Vec<&Field> = Vec::new();
    let mut body: Vec<(&Field, bool)> = Vec::new(); // (field, inside a group)
    let mut group_counts: Vec<(&Field, usize)> = Vec::new();
    let mut current: Option<(&GroupDef, usize)> = None;
    for f in fields {
        if is_header(f.tag) {
            header.push(f);
            continue;
        }
        if is_trailer(f.tag) {
            trailer.push(f);
            continue;
        }
        if let Some((g, idx)) = current {
            if g.members.contains(&f.tag) {
                if f.tag == g.delim {
                    group_counts[idx].1 += 1;
                }
                body.push((f, true));
                continue;
            }
            current = None;
        }
        if let Some(g) = def.and_then(|d| d.groups.iter().find(|g| g.count == f.tag)) {
            group_counts.push((f, 0));
            current = Some((g, group_counts.len() - 1));
        }
        body.push((f, false));
    }
    let mut sorted_header = header.clone();
    sorted_header.sort_by_key(|f| f.tag);
    let mut sorted_trailer = trailer.clone();
    sorted_trailer.sort_by_key(|f| f.tag);
    let mut sorted_body: Vec<&Field> = body.iter().filter(|(_, g)| !g).map(|(f, _)| *f).collect();
    sorted_body.sort_by_key(|f| f.tag);
    // Group members are checked for value/format but not for repetition.
    let members: Vec<&Field> = body.iter().filter(|(_, g)| *g).map(|(f, _)| *f).collect();
    for (list, part) in [(&sorted_header, 0), (&sorted_trailer, 1), (&sorted_body, 2)] {
        let mut last: Option<&[u8]> = None;
        for f in list.iter() {
            if last == Some(f.tag_text) {
                return Err(Invalid::new(reason::REPEATED, f.tag_text));
            }
            last = Some(f.tag_text);
            check_field(f)?;
            if part == 2 {
                if def.is_some_and(|d| !d.fields.contains(&f.tag)) {
                    return Err(Invalid::new(reason::NOT_FOR_MSG_TYPE, f.tag_text));
                }
                if let Some((cf, n)) = group_counts.iter().find(|(cf, _)| std::ptr::eq(*cf, *f)) {
                    let declared = std::str::from_utf8(cf.value)
                        .ok()
                        .and_then(|s| s.parse::<usize>().ok());
                    if declared != Some(*n) {
                        return Err(Invalid::new(reason::GROUP_COUNT, cf.tag_text));
                    }
                }
            }
        }
    }
    for f in members {
        check_field(f)?;
    }
    Ok(())
}

fn check_field(f: &Field<'_>) -> Result<(), Invalid> {
    if f.value.is_empty() {
        return Err(Invalid::new(reason::NO_VALUE, f.tag_text));
    }
    if !is_defined_tag(f.tag) {
        return Err(Invalid::new(reason::INVALID_TAG, f.tag_text));
    }
    if !valid_format(field_type(f.tag), f.value) {
        return Err(Invalid::new(reason::BAD_FORMAT, f.tag_text));
    }
    if let Some(values) = enum_values(f.tag) {
        if !values.iter().any(|v| v.as_bytes() == f.value) {
            return Err(Invalid::new(reason::BAD_VALUE, f.tag_text));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;

    fn check(s: &str) -> Result<(), Invalid> {
        let m = s.replace('|', "\x01");
        let f = codec::parse(m.as_bytes()).unwrap();
        validate(&f)
    }
    fn err(reason: u32, tag: &str) -> Result<(), Invalid> {
        Err(Invalid {
            reason,
            ref_tag: Some(tag.as_bytes().to_vec()),
        })
    }
    const H: &str = "8=FIX.4.4|9=1|35=D|34=2|49=A|52=20240101-00:00:00|56=B|";

    #[test]
    fn table() {
        let t = "20240101-00:00:00";
        let cases: Vec<(String, Result<(), Invalid>)> = vec![
            (
                format!("{H}11=a|21=1|40=1|54=1|55=X|60={t}|38=002000.00|10=000|"),
                Ok(()),
            ),
            (
                format!("{H}11=a|21=4|40=1|54=1|60={t}|10=000|"),
                err(5, "21"),
            ),
            (
                format!("{H}11=a|40=1|54=1|60={t}|38=+200.00|10=000|"),
                err(6, "38"),
            ),
            (format!("{H}40=1|54=1|60={t}|10=000|"), err(1, "11")),
            (
                format!("{H}11=a|40=1|40=2|54=1|60={t}|10=000|"),
                err(13, "40"),
            ),
            (
                format!("{H}11=a|40=1|54=1|60={t}|386=3|336=A|336=B|10=000|"),
                err(16, "386"),
            ),
            (
                format!("{H}11=a|40=1|54=1|60={t}|386=2|336=A|336=B|10=000|"),
                Ok(()),
            ),
            (format!("{H}11=a|40=1|54=1|60={t}|454=0|10=000|"), Ok(())),
            (
                format!("{H}11=a|40=1|54=1|60={t}|126=20040415|10=000|"),
                err(6, "126"),
            ),
            (
                format!("{H}11=a|40=1|54=1|60={t}|112=x|10=000|"),
                err(2, "112"),
            ),
            (
                format!("{H}11=a|40=1|54=1|60={t}|5000=x|10=000|"),
                err(0, "5000"),
            ),
            (
                format!("8=FIX.4.4|9=1|35=D|11=a|40=1|54=1|60={t}|34=2|49=A|52={t}|56=B|10=000|"),
                err(14, "34"),
            ),
            (
                format!("8=FIX.4.4|9=1|35=0|34=2|49=A|52={t}|56=B|-1=x|10=000|"),
                err(0, "-1"),
            ),
            (
                format!("8=FIX.4.4|9=1|35=0|34=2|49=A|52={t}|56=|10=000|"),
                err(4, "56"),
            ),
            (
                format!("8=FIX.4.4|9=1|35=0|34=2|49=A|52={t}|10=000|"),
                err(1, "56"),
            ),
            (
                format!("8=FIX.4.4|9=1|35=*|34=2|49=A|52={t}|56=B|10=000|"),
                Err(Invalid {
                    reason: 11,
                    ref_tag: None,
                }),
            ),
        ];
        for (m, want) in cases {
            assert_eq!(check(&m), want, "{m}");
        }
    }

    #[test]
    fn timestamps_round_trip() {
        let ms = parse_utc_timestamp(b"20240229-23:59:58.123").unwrap();
        assert_eq!(format_utc_timestamp(ms), "20240229-23:59:58.123");
        assert_eq!(parse_utc_timestamp(b"19700101-00:00:01"), Some(1000));
        assert!(parse_utc_timestamp(b"20040415").is_none());
    }

    #[test]
    fn floats() {
        for ok in ["1", "002000.00", "-1.5", ".5", "5."] {
            assert!(valid_format(FieldType::Float, ok.as_bytes()), "{ok}");
        }
        for bad in ["+200.00", "", "1e5", "1.2.3", "-", "."] {
            assert!(!valid_format(FieldType::Float, bad.as_bytes()), "{bad}");
        }
    }
}
