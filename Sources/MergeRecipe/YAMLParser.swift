internal import CYAML

/// Reads YAML text into documents of ``YAMLNode``s with source ranges.
///
/// A thin layer over libyaml's event parser. What libyaml leaves to its caller is done here:
/// aliases are resolved (with a bound on how far they may expand), merge keys (`<<`) are
/// applied, and duplicate keys are reported. Everything runs on the calling thread; the result
/// is a `Sendable` value.
public enum YAMLParser {
  /// The most nodes a file may expand to, counting every copy an alias makes.
  public static let maximumNodeCount = 1_000_000
  /// The deepest nesting of collections accepted.
  public static let maximumDepth = 256

  /// The result of reading a file: its documents, and non-fatal problems (duplicate keys).
  public struct Result: Sendable {
    /// The documents in file order.
    public var documents: [YAMLDocument]
    /// Problems that did not stop reading: duplicate keys.
    public var problems: [YAMLError]
  }

  /// Parses every document in `text`.
  ///
  /// - Throws: `YAMLError` for a syntax error, an undefined alias, nesting deeper than
  ///   ``maximumDepth`` or expansion past ``maximumNodeCount`` nodes.
  public static func parse(_ text: String) throws(YAMLError) -> Result {
    let parser = EventParser(text)
    var composer = Composer()
    while true {
      let event = try parser.next()
      let done = event.isStreamEnd
      try composer.handle(event)
      if done { break }
    }
    return Result(documents: composer.documents, problems: composer.problems)
  }
}

// MARK: - Events

/// One libyaml event, copied out of C memory.
struct YAMLEvent {
  enum Kind {
    case streamStart, streamEnd, documentStart, documentEnd
    case alias(anchor: String)
    case scalar(anchor: String?, tag: String?, value: String, style: YAMLScalar.Style)
    case sequenceStart(anchor: String?, tag: String?)
    case sequenceEnd
    case mappingStart(anchor: String?, tag: String?)
    case mappingEnd
  }

  var kind: Kind
  var range: SourceRange

  var isStreamEnd: Bool {
    if case .streamEnd = kind { return true }
    return false
  }
}

/// Owns a libyaml parser and the copy of the input it reads from.
///
/// libyaml keeps a pointer to the input for the parser's whole life, so the parser owns a copy
/// at a stable heap address, freed in `deinit` after the parser itself.
final class EventParser {
  private let parser: UnsafeMutablePointer<yaml_parser_t>
  private let input: UnsafeMutableBufferPointer<UInt8>
  private var failed = false

  init(_ text: String) {
    var bytes = Array(text.utf8)
    // A byte-order mark is allowed at the start (PyYAML accepts it); libyaml, told the
    // encoding, would read it as content. Positions stay those an editor shows.
    if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { bytes.removeFirst(3) }
    input = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: max(1, bytes.count))
    _ = input.initialize(from: bytes)
    parser = UnsafeMutablePointer<yaml_parser_t>.allocate(capacity: 1)
    // yaml_parser_initialize only fails when malloc does.
    _ = yaml_parser_initialize(parser)
    yaml_parser_set_encoding(parser, YAML_UTF8_ENCODING)
    yaml_parser_set_input_string(parser, input.baseAddress, bytes.count)
  }

  deinit {
    yaml_parser_delete(parser)
    parser.deallocate()
    input.deallocate()
  }

  func next() throws(YAMLError) -> YAMLEvent {
    if failed { throw YAMLError("parser already failed", at: nil) }
    var event = yaml_event_t()
    guard yaml_parser_parse(parser, &event) == 1 else {
      failed = true
      throw currentError()
    }
    defer { yaml_event_delete(&event) }
    let range = SourceRange(
      start: Self.location(event.start_mark), end: Self.location(event.end_mark))
    let kind: YAMLEvent.Kind
    switch event.type {
    case YAML_STREAM_START_EVENT: kind = .streamStart
    case YAML_STREAM_END_EVENT: kind = .streamEnd
    case YAML_DOCUMENT_START_EVENT: kind = .documentStart
    case YAML_DOCUMENT_END_EVENT: kind = .documentEnd
    case YAML_ALIAS_EVENT:
      kind = .alias(anchor: Self.string(event.data.alias.anchor) ?? "")
    case YAML_SCALAR_EVENT:
      let s = event.data.scalar
      let value: String
      if let p = s.value {
        value = String(decoding: UnsafeBufferPointer(start: p, count: s.length), as: UTF8.self)
      } else {
        value = ""
      }
      let style: YAMLScalar.Style
      switch s.style {
      case YAML_SINGLE_QUOTED_SCALAR_STYLE: style = .singleQuoted
      case YAML_DOUBLE_QUOTED_SCALAR_STYLE: style = .doubleQuoted
      case YAML_LITERAL_SCALAR_STYLE: style = .literal
      case YAML_FOLDED_SCALAR_STYLE: style = .folded
      default: style = .plain
      }
      kind = .scalar(
        anchor: Self.string(s.anchor), tag: Self.string(s.tag), value: value, style: style)
    case YAML_SEQUENCE_START_EVENT:
      kind = .sequenceStart(
        anchor: Self.string(event.data.sequence_start.anchor),
        tag: Self.string(event.data.sequence_start.tag))
    case YAML_SEQUENCE_END_EVENT: kind = .sequenceEnd
    case YAML_MAPPING_START_EVENT:
      kind = .mappingStart(
        anchor: Self.string(event.data.mapping_start.anchor),
        tag: Self.string(event.data.mapping_start.tag))
    case YAML_MAPPING_END_EVENT: kind = .mappingEnd
    default:
      failed = true
      throw YAMLError("unexpected YAML event", at: range)
    }
    return YAMLEvent(kind: kind, range: range)
  }

  private func currentError() -> YAMLError {
    let p = parser.pointee
    let problem = p.problem.map { String(cString: $0) } ?? "invalid YAML"
    let mark = Self.location(p.problem_mark)
    var notes: [Diagnostic.Note] = []
    if let context = p.context.map({ String(cString: $0) }) {
      notes.append(Diagnostic.Note(context, at: SourceRange(at: Self.location(p.context_mark))))
    }
    let message: String
    if p.error == YAML_READER_ERROR {
      // The reader reports a byte offset, not a mark: count lines and characters up to it.
      message = "the text cannot be read as YAML: \(problem)"
      var location = SourceLocation(line: 1, column: 1)
      for byte in input.prefix(min(Int(p.problem_offset), input.count)) {
        if byte == 0x0A {
          location = SourceLocation(line: location.line + 1, column: 1)
        } else if byte & 0xC0 != 0x80 {
          location.column += 1
        }
      }
      return YAMLError(message, at: SourceRange(at: location), notes: notes)
    }
    message = "YAML syntax error: \(problem)"
    return YAMLError(message, at: SourceRange(at: mark), notes: notes)
  }

  private static func location(_ mark: yaml_mark_t) -> SourceLocation {
    SourceLocation(line: Int(mark.line) + 1, column: Int(mark.column) + 1)
  }

  private static func string(_ p: UnsafeMutablePointer<yaml_char_t>?) -> String? {
    guard let p else { return nil }
    return String(cString: UnsafePointer(p))
  }
}

// MARK: - Composer

/// Builds nodes from events without recursion, so nesting depth costs no stack.
private struct Composer {
  /// A collection being built.
  ///
  /// A struct kept in the stack, so that each item is appended in place (an enum payload taken
  /// out and put back copied the items: quadratic).
  private struct Frame {
    var isMapping: Bool
    var items: [YAMLNode] = []
    var start: SourceLocation
    var tag: String?
    var anchor: String?
  }

  var documents: [YAMLDocument] = []
  var problems: [YAMLError] = []
  private var stack: [Frame] = []
  private var anchors: [String: YAMLNode] = [:]
  private var root: YAMLNode?
  private var documentStart = SourceLocation(line: 1, column: 1)
  private var nodeCount = 0

  mutating func handle(_ event: YAMLEvent) throws(YAMLError) {
    switch event.kind {
    case .streamStart, .streamEnd:
      break
    case .documentStart:
      anchors = [:]
      root = nil
      documentStart = event.range.start
    case .documentEnd:
      documents.append(
        YAMLDocument(root: root, range: SourceRange(start: documentStart, end: event.range.end)))
      root = nil
    case .alias(let anchor):
      guard let node = anchors[anchor] else {
        throw YAMLError("undefined alias '*\(anchor)'", at: event.range)
      }
      nodeCount += Self.size(of: node)
      try checkSize(event.range)
      add(node)
    case .scalar(let anchor, let tag, let value, let style):
      nodeCount += 1
      try checkSize(event.range)
      let node = YAMLNode(
        .scalar(YAMLScalar(value, style: style)), range: event.range, tag: Self.expand(tag))
      if let anchor { anchors[anchor] = node }
      add(node)
    case .sequenceStart(let anchor, let tag):
      guard stack.count < YAMLParser.maximumDepth else {
        throw YAMLError("nesting deeper than \(YAMLParser.maximumDepth) levels", at: event.range)
      }
      stack.append(
        Frame(isMapping: false, start: event.range.start, tag: Self.expand(tag), anchor: anchor))
    case .mappingStart(let anchor, let tag):
      guard stack.count < YAMLParser.maximumDepth else {
        throw YAMLError("nesting deeper than \(YAMLParser.maximumDepth) levels", at: event.range)
      }
      stack.append(
        Frame(isMapping: true, start: event.range.start, tag: Self.expand(tag), anchor: anchor))
    case .sequenceEnd:
      guard let frame = stack.popLast(), !frame.isMapping else {
        throw YAMLError("unbalanced sequence end", at: event.range)
      }
      nodeCount += 1
      let node = YAMLNode(
        .sequence(frame.items), range: SourceRange(start: frame.start, end: event.range.end),
        tag: frame.tag)
      if let anchor = frame.anchor { anchors[anchor] = node }
      add(node)
    case .mappingEnd:
      guard let frame = stack.popLast(), frame.isMapping else {
        throw YAMLError("unbalanced mapping end", at: event.range)
      }
      nodeCount += 1
      let pairs = buildPairs(frame.items)
      let node = YAMLNode(
        .mapping(pairs), range: SourceRange(start: frame.start, end: event.range.end),
        tag: frame.tag)
      if let anchor = frame.anchor { anchors[anchor] = node }
      add(node)
    }
  }

  private func checkSize(_ range: SourceRange) throws(YAMLError) {
    if nodeCount > YAMLParser.maximumNodeCount {
      throw YAMLError(
        "the document expands to more than \(YAMLParser.maximumNodeCount) values (aliases nested too deeply)",
        at: range)
    }
  }

  private mutating func add(_ node: YAMLNode) {
    guard !stack.isEmpty else {
      root = node
      return
    }
    stack[stack.count - 1].items.append(node)
  }

  /// Pairs up keys and values, applies merge keys and reports duplicate keys.
  ///
  /// As in PyYAML, keys written in the mapping win over merged ones, and among several merged
  /// mappings the first to define a key wins.
  private mutating func buildPairs(_ items: [YAMLNode]) -> [YAMLPair] {
    var explicit: [YAMLPair] = []
    var merged: [YAMLPair] = []
    // The keys merged so far (a set, so that a merge of many keys stays linear).
    var mergedKeys = Set<YAMLNode.Kind>()
    var seen: [String: SourceRange] = [:]
    var index = 0
    while index + 1 < items.count {
      let key = items[index]
      let value = items[index + 1]
      index += 2
      if let s = key.scalar, s.style == .plain, s.value == "<<", key.tag == nil {
        var sources: [YAMLNode] = []
        if value.mapping != nil {
          sources = [value]
        } else if let list = value.sequence, list.allSatisfy({ $0.mapping != nil }) {
          sources = list
        } else {
          problems.append(
            YAMLError(
              "a merge key '<<' takes a mapping or a list of mappings", at: value.range,
              id: "bad-merge-key"))
          continue
        }
        for source in sources {
          for pair in source.mapping ?? [] where mergedKeys.insert(pair.key.kind).inserted {
            merged.append(pair)
          }
        }
        continue
      }
      if let s = key.scalar {
        if let first = seen[s.value] {
          problems.append(
            YAMLError(
              "duplicate key '\(s.value)'", at: key.range,
              notes: [Diagnostic.Note("'\(s.value)' first appears here", at: first)],
              id: "duplicate-key"))
          continue
        }
        seen[s.value] = key.range
      }
      explicit.append(YAMLPair(key: key, value: value))
    }
    for pair in merged {
      if let s = pair.key.scalar, seen[s.value] != nil { continue }
      explicit.append(pair)
    }
    return explicit
  }

  private static func expand(_ tag: String?) -> String? {
    guard let tag else { return nil }
    if tag.hasPrefix("!!") { return "tag:yaml.org,2002:" + tag.dropFirst(2) }
    return tag
  }

  private static func size(of node: YAMLNode) -> Int {
    var count = 0
    var pending = [node]
    while let n = pending.popLast() {
      count += 1
      if count > YAMLParser.maximumNodeCount { return count }
      switch n.kind {
      case .scalar: break
      case .sequence(let items): pending.append(contentsOf: items)
      case .mapping(let pairs):
        for p in pairs {
          pending.append(p.key)
          pending.append(p.value)
        }
      }
    }
    return count
  }
}
