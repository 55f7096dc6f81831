//! The sandbox's built-in procedure catalogue: 20 procedures with national-style codes, their
//! fields (lĩnh vực) and agencies (cơ quan), in the upper-case record format of CONTRACTS.md
//! section 1 ([seen] field names; the values are realistic but invented).

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// What the catalogue operations serve. Records are kept as JSON so tests can change any field
/// (`Portal::set_catalogue`, `Portal::update_procedure`) to exercise change detection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Catalogue {
    /// Procedure records; each has `MATTHC` (its national code) and the upper-case fields.
    pub procedures: Vec<Value>,
    /// Agencies: `{MACOQUAN, TENCOQUAN, CAPCOQUAN}`.
    pub agencies: Vec<Value>,
    /// Fields of procedures: `{MALINHVUC, TENLINHVUC}`.
    pub fields: Vec<Value>,
}

impl Catalogue {
    /// The procedure with this national code.
    pub fn procedure(&self, code: &str) -> Option<&Value> {
        self.procedures
            .iter()
            .find(|p| p.get("MATTHC").and_then(Value::as_str) == Some(code))
    }

    pub fn contains(&self, code: &str) -> bool {
        self.procedure(code).is_some()
    }

    /// The national codes, in catalogue order.
    pub fn codes(&self) -> Vec<String> {
        self.procedures
            .iter()
            .filter_map(|p| p.get("MATTHC").and_then(Value::as_str).map(String::from))
            .collect()
    }
}

const FIELDS: &[(&str, &str)] = &[
    ("G09-TP01", "Hộ tịch"),
    ("G09-TP02", "Chứng thực"),
    ("G09-TN01", "Đất đai"),
    ("G09-XD01", "Hoạt động xây dựng"),
    ("G09-KH01", "Thành lập và hoạt động của hộ kinh doanh"),
    ("G09-LD01", "Bảo trợ xã hội"),
    ("G09-CT01", "Lưu thông hàng hóa trong nước"),
];

const AGENCIES: &[(&str, &str, &str)] = &[
    ("000.00.01.H22", "Ủy ban nhân dân tỉnh", "Tỉnh"),
    ("000.05.01.H22", "Sở Tư pháp", "Tỉnh"),
    ("000.12.01.H22", "Sở Tài nguyên và Môi trường", "Tỉnh"),
    ("000.14.01.H22", "Sở Xây dựng", "Tỉnh"),
    (
        "000.07.01.H22",
        "Sở Lao động - Thương binh và Xã hội",
        "Tỉnh",
    ),
    ("000.00.10.H22", "Ủy ban nhân dân cấp huyện", "Huyện"),
    ("000.00.21.H22", "Ủy ban nhân dân cấp xã", "Xã"),
];

/// (code, name, field index, agency index, days, fee in VND, result)
const PROCEDURES: &[(&str, &str, usize, usize, u32, u64, &str)] = &[
    (
        "1.001193",
        "Đăng ký khai sinh",
        0,
        6,
        1,
        0,
        "Giấy khai sinh",
    ),
    (
        "1.000894",
        "Đăng ký kết hôn",
        0,
        6,
        3,
        0,
        "Giấy chứng nhận kết hôn",
    ),
    (
        "1.000656",
        "Đăng ký khai tử",
        0,
        6,
        1,
        0,
        "Trích lục khai tử",
    ),
    (
        "1.004884",
        "Đăng ký thay đổi, cải chính, bổ sung thông tin hộ tịch",
        0,
        6,
        3,
        15000,
        "Trích lục thay đổi hộ tịch",
    ),
    (
        "1.004873",
        "Cấp Giấy xác nhận tình trạng hôn nhân",
        0,
        6,
        3,
        0,
        "Giấy xác nhận tình trạng hôn nhân",
    ),
    (
        "2.000815",
        "Chứng thực bản sao từ bản chính giấy tờ, văn bản",
        1,
        6,
        1,
        2000,
        "Bản sao được chứng thực",
    ),
    (
        "2.000884",
        "Chứng thực chữ ký trong các giấy tờ, văn bản",
        1,
        6,
        1,
        10000,
        "Giấy tờ được chứng thực chữ ký",
    ),
    (
        "2.001035",
        "Chứng thực hợp đồng, giao dịch liên quan đến nhà ở",
        1,
        6,
        2,
        50000,
        "Hợp đồng được chứng thực",
    ),
    (
        "1.003003",
        "Đăng ký biến động quyền sử dụng đất, quyền sở hữu tài sản gắn liền với đất",
        2,
        2,
        10,
        100000,
        "Giấy chứng nhận quyền sử dụng đất",
    ),
    (
        "1.004227",
        "Cấp đổi Giấy chứng nhận quyền sử dụng đất",
        2,
        2,
        7,
        50000,
        "Giấy chứng nhận quyền sử dụng đất",
    ),
    (
        "2.000889",
        "Đính chính Giấy chứng nhận đã cấp",
        2,
        2,
        10,
        0,
        "Giấy chứng nhận đã đính chính",
    ),
    (
        "1.009972",
        "Cấp giấy phép xây dựng mới đối với nhà ở riêng lẻ",
        3,
        5,
        15,
        75000,
        "Giấy phép xây dựng",
    ),
    (
        "1.009974",
        "Cấp giấy phép sửa chữa, cải tạo công trình",
        3,
        5,
        15,
        75000,
        "Giấy phép xây dựng",
    ),
    (
        "1.009994",
        "Gia hạn giấy phép xây dựng",
        3,
        5,
        5,
        15000,
        "Giấy phép xây dựng được gia hạn",
    ),
    (
        "2.000720",
        "Đăng ký thành lập hộ kinh doanh",
        4,
        5,
        3,
        100000,
        "Giấy chứng nhận đăng ký hộ kinh doanh",
    ),
    (
        "1.001612",
        "Đăng ký thay đổi nội dung đăng ký hộ kinh doanh",
        4,
        5,
        3,
        50000,
        "Giấy chứng nhận đăng ký hộ kinh doanh",
    ),
    (
        "1.001776",
        "Thực hiện, điều chỉnh, thôi hưởng trợ cấp xã hội hàng tháng",
        5,
        5,
        15,
        0,
        "Quyết định hưởng trợ cấp xã hội",
    ),
    (
        "2.000286",
        "Cấp Giấy chứng nhận đủ điều kiện kinh doanh xăng dầu",
        6,
        0,
        20,
        1200000,
        "Giấy chứng nhận đủ điều kiện",
    ),
    (
        "1.005447",
        "Cấp lại Giấy chứng nhận đăng ký hộ kinh doanh",
        4,
        5,
        3,
        0,
        "Giấy chứng nhận đăng ký hộ kinh doanh",
    ),
    (
        "2.001255",
        "Cấp bản sao trích lục hộ tịch",
        0,
        1,
        1,
        8000,
        "Bản sao trích lục hộ tịch",
    ),
];

fn procedure(p: &(&str, &str, usize, usize, u32, u64, &str)) -> Value {
    let (code, name, field, agency, days, fee, result) = *p;
    let (field_code, field_name) = FIELDS[field];
    let (agency_code, agency_name, level) = AGENCIES[agency];
    let fees = |channel_note: &str| {
        if fee == 0 {
            json!([{"SOTIEN": 0, "DONVI": "Đồng", "MOTA": "Miễn lệ phí"}])
        } else {
            json!([{"SOTIEN": fee, "DONVI": "Đồng", "MOTA": format!("Lệ phí {channel_note}")}])
        }
    };
    json!({
        "MATTHC": code,
        "TENTTHC": name,
        "MALINHVUC": field_code,
        "LINHVUCTHUCHIEN": field_name,
        "CAPTHUCHIEN": level,
        "CACHTHUCTHUCHIEN": [
            {"KENH": "Trực tiếp", "THOIGIAN": [{
                "THOIGIANGIAIQUYET": days, "DONVITINH": "Ngày làm việc",
                "PHILEPHI": fees("nộp trực tiếp")}]},
            {"KENH": "Trực tuyến", "THOIGIAN": [{
                "THOIGIANGIAIQUYET": days, "DONVITINH": "Ngày làm việc",
                "PHILEPHI": fees("nộp trực tuyến")}]},
            {"KENH": "Dịch vụ bưu chính", "THOIGIAN": [{
                "THOIGIANGIAIQUYET": days + 1, "DONVITINH": "Ngày làm việc",
                "PHILEPHI": fees("nộp qua bưu chính")}]}
        ],
        "THANHPHANHOSO": [
            {"TENGIAYTO": format!("Tờ khai {}", name.to_lowercase()), "MAGIAYTO": format!("{code}.TK"),
             "SOLUONGBANCHINH": 1, "SOLUONGBANSAO": 0},
            {"TENGIAYTO": "Căn cước công dân hoặc giấy tờ tùy thân có ảnh", "MAGIAYTO": format!("{code}.CC"),
             "SOLUONGBANCHINH": 0, "SOLUONGBANSAO": 1}
        ],
        "COQUANTHUCHIEN": [{"MACOQUAN": agency_code, "TENCOQUAN": agency_name}],
        "KETQUATHUCHIEN": [{"TENKETQUA": result}],
        "CANCUPHAPLY": [
            {"SOVANBAN": "61/2018/NĐ-CP", "TENVANBAN": "Nghị định về thực hiện cơ chế một cửa, một cửa liên thông trong giải quyết thủ tục hành chính", "NGAYBANHANH": "23/04/2018"}
        ],
        "YEUCAU": "Không",
    })
}

/// The built-in catalogue.
pub fn builtin() -> Catalogue {
    Catalogue {
        procedures: PROCEDURES.iter().map(procedure).collect(),
        agencies: AGENCIES
            .iter()
            .map(|(c, n, l)| json!({"MACOQUAN": c, "TENCOQUAN": n, "CAPCOQUAN": l}))
            .collect(),
        fields: FIELDS
            .iter()
            .map(|(c, n)| json!({"MALINHVUC": c, "TENLINHVUC": n}))
            .collect(),
    }
}
