/** Japanese first, English on request; the choice is kept in localStorage and set as <html lang>. */
const ja = {
  app: "支援ポータル", tagline: "中小企業・小規模事業者のための支援ポータル", lang_switch: "English", lang_switch_label: "Switch to English",
  nav: "メインメニュー", home: "ホーム", sign_in: "ログイン", sign_up: "新規登録", sign_out: "ログアウト",
  welcome: "ようこそ", signed_in_as: "ログイン中", signin_failed: "ログインできませんでした",
  intro: "専門家派遣の申込み、支援施策の検索、評価の入力などをオンラインで行えます。",
  // sign-up
  signup_title: "アカウントの新規登録", email: "メールアドレス", password: "パスワード",
  password_hint: "12文字以上、推測されにくいものを", real_name: "氏名（実名）", kind: "利用者の種類",
  kind_business: "事業者", kind_founder: "創業予定者", kind_expert: "専門家", kind_institution: "支援機関職員",
  signup_submit: "登録する", signup_done: "確認メールを送りました。メールのリンクを開いてから、ログインしてください。",
  // business
  profile: "事業者情報", profile_title: "事業者情報（ワンスオンリー）", business_name: "事業者名", corporate_number: "法人番号（13桁、個人事業は空欄）",
  prefecture: "都道府県", industry: "業種", employees: "従業員数", postal_code: "郵便番号", address: "所在地",
  representative: "代表者", capital: "資本金（円）", financials: "決算（直近3期）", fiscal_year: "年度", sales: "売上高（円）",
  operating_profit: "営業利益（円）", period_latest: "直近期", period_prev: "前期", period_prev2: "前々期",
  save: "保存する", saved: "保存しました", register_business: "事業者を登録する", your_business: "登録済みの事業者",
  letter_pending: "法人の本人確認: 本店所在地に郵送するコードを入力してください。", proof_code: "確認コード（8桁）", prove: "確認する",
  recommendations: "おすすめの支援施策", reasons: "おすすめの理由", programme: "支援施策", purpose: "目的", target: "対象",
  subsidy_rate: "補助率", cap_yen: "上限額", budget: "予算", no_recommendations: "今はおすすめがありません。事業者情報を登録すると表示されます。",
  details: "詳しく見る", back: "戻る",
  request: "専門家派遣の申込み", request_b: "専門家派遣の申込み（ルートB: 事業者から直接）", expert_id: "専門家ID",
  issue: "経営課題（具体的に）", issue_kind: "課題の分野", beyond_self_help: "自助努力では解決が難しい課題です",
  needs_specialist: "高度・専門的な知見が必要です", visit_day: "訪問希望日", visit_hours: "時間（1回あたり）",
  submit_request: "申し込む", requested: "申込みを受け付けました", consultation: "Web相談", consult_subject: "件名",
  consult_message: "相談内容", open_consultation: "Web相談を始める", consultation_opened: "Web相談を開始しました",
  free_left: "今年度の無料派遣の残り回数",
  dispatches: "派遣の一覧", no_dispatches: "派遣はまだありません。", more: "さらに表示", status: "状況", dispatch: "派遣", expert: "専門家",
  visits: "訪問", sign_off: "訪問を確認（従事証明）", signed_off: "確認しました",
  rate: "評価する", rate_title: "専門家の評価（6項目）", rate_legend: "1（低い）〜 5（高い）", comment: "コメント（任意）",
  rated: "評価を送信しました。ありがとうございました。", please_rate: "評価のお願い",
  please_rate_body: "派遣を受けた専門家の評価がまだです。評価が済むまで、次の無料派遣は申し込めません。",
  rate_now: "今すぐ評価する", later: "あとで",
  radar: "評価（レーダーチャート）", radar_count: "件の評価（直近{days}日）", radar_none: "直近の評価はまだありません。",
  axis_communication: "コミュニケーション", axis_clarity: "説明の丁寧さ・分かりやすさ", axis_expertise: "専門性",
  axis_analysis: "分析力", axis_execution: "実現力", axis_manners: "社会人としてのマナー",
  inbox: "お知らせ", no_messages: "お知らせはありません。",
  // expert
  visit_title: "訪問のチェックイン・チェックアウト", dispatch_id: "派遣ID", check_in: "チェックイン", check_out: "チェックアウト",
  checked_in: "チェックインしました", checked_out: "チェックアウトしました", position: "現在地", position_unknown: "位置情報を取得できませんでした",
  declaration: "時間の申告（記録漏れ・訂正）", start: "開始", end: "終了", reason: "理由", signature: "署名（氏名）",
  declare: "申告する", declared: "申告しました", report: "報告書", summary: "実施内容", proposals: "提案", follow_up: "フォローアップ",
  file_report: "報告書を提出", reported: "報告書を提出しました", cosign: "連名で申し込む", cosigned: "連名しました",
  cosign_title: "事業者からの申込みへの連名（ルートB）", cosign_hint: "上の派遣IDの申込みに専門家として連名します。", expert_page: "専門家ページ", fields: "専門分野", qualifications: "資格",
  introduction: "自己紹介", availability: "対応できない期間",
  // institution / bureau / agency
  request_a: "専門家派遣の申込み（ルートA: 支援機関から）", business_id: "事業者ID", institution_id: "支援機関ID",
  frames: "予算枠と台帳", frame_id: "予算枠ID", show: "表示", ledger: "台帳", export_csv: "CSVで書き出す", report_csv: "予算執行レポート（CSV）",
  allocated: "配分", reserved: "予約", spent: "支出", remaining: "残額", kind_col: "種別", amount: "金額", at: "日時", who: "担当",
  reviews: "審査待ちの申請", no_reviews: "審査待ちはありません。", confirm: "確認して支払う", confirmed: "確認しました",
  loading: "読み込み中…", error: "エラー", required: "必須", yes: "はい", no: "いいえ", not_found: "ページが見つかりません",
  need_sign_in: "このページを見るにはログインしてください。",
};
type Key = keyof typeof ja;

const en: Record<Key, string> = {
  app: "SME Support Portal", tagline: "The support portal for small and medium-sized businesses", lang_switch: "日本語", lang_switch_label: "日本語に切り替え",
  nav: "Main menu", home: "Home", sign_in: "Sign in", sign_up: "Sign up", sign_out: "Sign out",
  welcome: "Welcome", signed_in_as: "Signed in as", signin_failed: "Sign-in failed",
  intro: "Request expert dispatches, find support programmes and rate experts online.",
  signup_title: "Create an account", email: "E-mail", password: "Password",
  password_hint: "12 characters or more, hard to guess", real_name: "Full (real) name", kind: "Account type",
  kind_business: "Business", kind_founder: "Founder", kind_expert: "Expert", kind_institution: "Support institution staff",
  signup_submit: "Sign up", signup_done: "We sent you a confirmation e-mail. Open its link, then sign in.",
  profile: "Business profile", profile_title: "Business profile (entered once)", business_name: "Business name",
  corporate_number: "Corporate number (13 digits; empty for sole proprietors)", prefecture: "Prefecture", industry: "Industry",
  employees: "Employees", postal_code: "Postal code", address: "Address", representative: "Representative", capital: "Capital (JPY)",
  financials: "Financials (last three periods)", fiscal_year: "Fiscal year", sales: "Sales (JPY)", operating_profit: "Operating profit (JPY)",
  period_latest: "Latest period", period_prev: "Previous period", period_prev2: "Period before", save: "Save", saved: "Saved",
  register_business: "Register the business", your_business: "Your business",
  letter_pending: "Corporate proof: enter the code from the letter posted to the head office.", proof_code: "Code (8 digits)", prove: "Confirm",
  recommendations: "Recommended programmes", reasons: "Why we recommend it", programme: "Programme", purpose: "Purpose", target: "Target",
  subsidy_rate: "Subsidy rate", cap_yen: "Cap", budget: "Budget", no_recommendations: "No recommendations yet; register your business to get some.",
  details: "Details", back: "Back",
  request: "Request an expert", request_b: "Request an expert (route B: directly by the business)", expert_id: "Expert ID",
  issue: "Management issue (be specific)", issue_kind: "Field of the issue", beyond_self_help: "The issue is beyond what we can solve ourselves",
  needs_specialist: "It needs advanced, specialised knowledge", visit_day: "Preferred visit day", visit_hours: "Hours per visit",
  submit_request: "Send the request", requested: "Your request was received", consultation: "Web consultation", consult_subject: "Subject",
  consult_message: "Your question", open_consultation: "Start a web consultation", consultation_opened: "Web consultation started",
  free_left: "Free dispatches left this fiscal year",
  dispatches: "My dispatches", no_dispatches: "No dispatches yet.", more: "Show more", status: "Status", dispatch: "Dispatch", expert: "Expert",
  visits: "Visits", sign_off: "Confirm the visit (sign-off)", signed_off: "Confirmed",
  rate: "Rate", rate_title: "Rate the expert (six axes)", rate_legend: "1 (low) to 5 (high)", comment: "Comment (optional)",
  rated: "Thank you: your rating was sent.", please_rate: "Please rate your expert",
  please_rate_body: "You have not yet rated the expert of your dispatch. Until you do, you cannot request your next free dispatch.",
  rate_now: "Rate now", later: "Later",
  radar: "Ratings (radar chart)", radar_count: "ratings (last {days} days)", radar_none: "No recent ratings yet.",
  axis_communication: "Communication", axis_clarity: "Politeness and clarity", axis_expertise: "Expertise",
  axis_analysis: "Analysis", axis_execution: "Execution", axis_manners: "Social manners",
  inbox: "Inbox", no_messages: "No messages.",
  visit_title: "Visit check-in and check-out", dispatch_id: "Dispatch ID", check_in: "Check in", check_out: "Check out",
  checked_in: "Checked in", checked_out: "Checked out", position: "Position", position_unknown: "Could not get your position",
  declaration: "Declare a visit time (missing or corrected)", start: "Start", end: "End", reason: "Reason", signature: "Signature (your name)",
  declare: "Declare", declared: "Declared", report: "Report", summary: "What was done", proposals: "Proposals", follow_up: "Follow-up",
  file_report: "File the report", reported: "Report filed", cosign: "Co-sign the request", cosigned: "Co-signed",
  cosign_title: "Co-sign a business's direct request (route B)", cosign_hint: "Signs the request with the dispatch ID above as its expert.", expert_page: "Expert page", fields: "Fields", qualifications: "Qualifications",
  introduction: "Introduction", availability: "Not available",
  request_a: "Request an expert (route A: by a support institution)", business_id: "Business ID", institution_id: "Institution ID",
  frames: "Budget frames and ledger", frame_id: "Frame ID", show: "Show", ledger: "Ledger", export_csv: "Export as CSV", report_csv: "Budget execution report (CSV)",
  allocated: "Allocated", reserved: "Reserved", spent: "Spent", remaining: "Remaining", kind_col: "Kind", amount: "Amount", at: "When", who: "By",
  reviews: "Applications to review", no_reviews: "Nothing to review.", confirm: "Confirm and pay", confirmed: "Confirmed",
  loading: "Loading…", error: "Error", required: "required", yes: "Yes", no: "No", not_found: "Page not found",
  need_sign_in: "Please sign in to see this page.",
};

export type Lang = "ja" | "en";
export let lang: Lang = (localStorage.getItem("smeportal.lang") as Lang) || "ja";

export function setLang(l: Lang): void {
  lang = l;
  localStorage.setItem("smeportal.lang", l);
  document.documentElement.lang = l;
}

export function t(key: Key, vars: Record<string, string | number> = {}): string {
  let s = (lang === "en" ? en : ja)[key] ?? key;
  for (const [k, v] of Object.entries(vars)) s = s.replace(`{${k}}`, String(v));
  return s;
}

/** Status words of a dispatch (R-DSP-14), in the reader's language. */
const STATUS: Record<string, [string, string]> = {
  requested: ["申込み", "requested"], awaiting_cosign: ["専門家の連名待ち", "awaiting the expert's co-signature"],
  accepted: ["受付", "accepted"], refused: ["不受理", "refused"], reserved: ["予算確保", "budget reserved"],
  approved: ["承認", "approved"], scheduled: ["日程確定", "scheduled"], visited: ["訪問済み", "visited"],
  reported: ["報告済み", "reported"], confirmed: ["確認済み", "confirmed"], paid: ["支払済み", "paid"],
  cancelled: ["取消し", "cancelled"], budget_unanswered: ["予算の回答待ち", "budget unanswered"],
};
export const statusText = (s: string) => (STATUS[s] ? STATUS[s][lang === "en" ? 1 : 0] : s);
