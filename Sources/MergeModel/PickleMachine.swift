/// The part of Python's pickle machine a PyTorch state dict needs, and nothing more.
///
/// It never imports or calls anything: a `GLOBAL` must be one of ``allowed`` and `REDUCE`
/// applies only the few of those that build a state dict. Everything else is an error naming
/// the opcode or the global, so a file that would run code under `torch.load` is refused.
struct PickleMachine {
  /// A value on the stack.
  indirect enum Value {
    case none, bool(Bool), int(Int), float(Double), string(String), bytes([UInt8])
    case tuple([Value]), list([Value]), dict([(Value, Value)])
    case global(String)
    case storage(key: String, dtype: DType)
    case tensor(Tensor)
    case mark
  }

  /// A tensor rebuilt from its storage.
  struct Tensor {
    var storage: String
    var dtype: DType
    var offset: Int
    var shape: [Int]
    var stride: [Int]
  }

  /// The storage types torch.save names, and their dtypes.
  static let storages: [String: DType] = [
    "torch.BFloat16Storage": .bfloat16, "torch.HalfStorage": .float16,
    "torch.FloatStorage": .float32, "torch.DoubleStorage": .float64, "torch.LongStorage": .int64,
    "torch.IntStorage": .int32, "torch.ShortStorage": .int16, "torch.CharStorage": .int8,
    "torch.ByteStorage": .uint8, "torch.BoolStorage": .bool,
  ]

  /// Every global a state dict may name.
  static let allowed: Set<String> = Set(storages.keys).union([
    "collections.OrderedDict", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_parameter",
  ])

  let bytes: [UInt8]
  let path: String
  var position = 0
  var stack: [Value] = []
  var memo: [Int: Value] = [:]

  init(bytes: [UInt8], path: String) {
    self.bytes = bytes
    self.path = path
  }

  func fail(_ reason: String) -> ModelError {
    .badSafetensors(
      path: path, tensor: nil,
      reason:
        "its pickle \(reason); merge only rebuilds tensors and never runs code from a checkpoint")
  }

  mutating func take(_ n: Int) throws(ModelError) -> ArraySlice<UInt8> {
    guard n >= 0, position + n <= bytes.count else { throw fail("ends early") }
    defer { position += n }
    return bytes[position..<position + n]
  }

  mutating func integer(_ width: Int, signed: Bool = false) throws(ModelError) -> Int {
    let b = try take(width)
    var v: UInt64 = 0
    for (k, byte) in b.enumerated() { v |= UInt64(byte) << (8 * UInt64(k)) }
    if signed && width < 8 && v & (1 << (UInt64(width) * 8 - 1)) != 0 {
      v |= ~0 << (UInt64(width) * 8)
    }
    return Int(truncatingIfNeeded: v)
  }

  mutating func line() throws(ModelError) -> String {
    guard let end = bytes[position...].firstIndex(of: 0x0A) else { throw fail("ends early") }
    defer { position = end + 1 }
    return String(decoding: bytes[position..<end], as: UTF8.self)
  }

  mutating func pop() throws(ModelError) -> Value {
    guard let v = stack.popLast() else { throw fail("pops an empty stack") }
    return v
  }

  /// The values above the topmost mark, which is removed.
  mutating func popMark() throws(ModelError) -> [Value] {
    guard let i = stack.lastIndex(where: { if case .mark = $0 { true } else { false } }) else {
      throw fail("has no mark")
    }
    let items = Array(stack[(i + 1)...])
    stack.removeSubrange(i...)
    return items
  }

  /// Runs the pickle to its STOP and returns the value left.
  mutating func run() throws(ModelError) -> Value {
    var steps = 0
    while true {
      steps += 1
      guard steps < 50_000_000 else { throw fail("is too long") }
      let op = try take(1).first ?? 0
      switch op {
      case 0x80: _ = try take(1)  // PROTO
      case 0x95: _ = try take(8)  // FRAME
      case 0x2E: return try pop()  // STOP
      case 0x28: stack.append(.mark)  // MARK
      case 0x7D: stack.append(.dict([]))  // EMPTY_DICT
      case 0x29: stack.append(.tuple([]))  // EMPTY_TUPLE
      case 0x5D: stack.append(.list([]))  // EMPTY_LIST
      case 0x4E: stack.append(.none)  // NONE
      case 0x88: stack.append(.bool(true))  // NEWTRUE
      case 0x89: stack.append(.bool(false))  // NEWFALSE
      case 0x4A: stack.append(.int(try integer(4, signed: true)))  // BININT
      case 0x4B: stack.append(.int(try integer(1)))  // BININT1
      case 0x4D: stack.append(.int(try integer(2)))  // BININT2
      case 0x8A:  // LONG1
        let n = try integer(1)
        guard n <= 8 else { throw fail("holds an integer wider than 64 bits") }
        stack.append(.int(n == 0 ? 0 : try integer(n, signed: true)))
      case 0x47:  // BINFLOAT (big-endian)
        let b = try take(8)
        stack.append(.float(Double(bitPattern: b.reduce(UInt64(0)) { $0 << 8 | UInt64($1) })))
      case 0x58: stack.append(.string(try text(integer(4))))  // BINUNICODE
      case 0x8C: stack.append(.string(try text(integer(1))))  // SHORT_BINUNICODE
      case 0x8D: stack.append(.string(try text(integer(8))))  // BINUNICODE8
      case 0x43: stack.append(.bytes(Array(try take(integer(1)))))  // SHORT_BINBYTES
      case 0x42: stack.append(.bytes(Array(try take(integer(4)))))  // BINBYTES
      case 0x71: memo[try integer(1)] = stack.last  // BINPUT
      case 0x72: memo[try integer(4)] = stack.last  // LONG_BINPUT
      case 0x94: memo[memo.count] = stack.last  // MEMOIZE
      case 0x68, 0x6A:  // BINGET, LONG_BINGET
        guard let v = memo[try integer(op == 0x68 ? 1 : 4)] else {
          throw fail("reads an unset memo")
        }
        stack.append(v)
      case 0x74: stack.append(try nested(.tuple(popMark())))  // TUPLE
      case 0x85: stack.append(try nested(.tuple([pop()])))  // TUPLE1
      case 0x86:  // TUPLE2
        let b = try pop()
        stack.append(try nested(.tuple([pop(), b])))
      case 0x87:  // TUPLE3
        let c = try pop()
        let b = try pop()
        stack.append(try nested(.tuple([pop(), b, c])))
      case 0x63:  // GLOBAL
        let module = try line()
        stack.append(try global(module + "." + line()))
      case 0x93:  // STACK_GLOBAL
        guard case .string(let name) = try pop(), case .string(let module) = try pop() else {
          throw fail("names a global by something other than strings")
        }
        stack.append(try global(module + "." + name))
      case 0x51: stack.append(try persistent(pop()))  // BINPERSID
      case 0x52:  // REDUCE
        let args = try pop()
        stack.append(try reduce(pop(), args))
      case 0x62: _ = try pop()  // BUILD: a state dict's _metadata, not needed
      case 0x73:  // SETITEM
        let v = try pop()
        let k = try pop()
        try setItems([k, v])
      case 0x75: try setItems(popMark())  // SETITEMS
      case 0x61:  // APPEND
        let v = try pop()
        try append([v])
      case 0x65: try append(popMark())  // APPENDS
      default:
        throw fail("uses opcode 0x\(String(op, radix: 16)), which a state dict does not need")
      }
    }
  }

  /// The most containers nested in one another (a state dict needs four; a deeper pickle
  /// would only make the values' recursive release deep enough to overflow the stack).
  static let depthLimit = 32

  /// `value`, unless it nests containers deeper than ``depthLimit``.
  func nested(_ value: Value) throws(ModelError) -> Value {
    guard Self.depth(value, limit: Self.depthLimit) <= Self.depthLimit else {
      throw fail("nests containers more than \(Self.depthLimit) deep")
    }
    return value
  }

  /// How deeply `value` nests containers, counting no further than `limit + 1`.
  static func depth(_ value: Value, limit: Int) -> Int {
    guard limit >= 0 else { return 1 }
    func deepest(_ items: some Sequence<Value>) -> Int {
      var d = 0
      for item in items {
        d = max(d, depth(item, limit: limit - 1))
        if d > limit { break }
      }
      return d + 1
    }
    switch value {
    case .tuple(let items), .list(let items): return deepest(items)
    case .dict(let pairs): return deepest(pairs.lazy.flatMap { [$0.0, $0.1] })
    default: return 0
    }
  }

  mutating func text(_ n: Int) throws(ModelError) -> String {
    String(decoding: try take(n), as: UTF8.self)
  }

  func global(_ name: String) throws(ModelError) -> Value {
    guard Self.allowed.contains(name) else { throw fail("calls \(name)") }
    return .global(name)
  }

  /// torch's persistent id of a storage: `('storage', type, key, location, numel)`.
  func persistent(_ id: Value) throws(ModelError) -> Value {
    guard case .tuple(let parts) = id, parts.count == 5, case .string("storage") = parts[0],
      case .global(let type) = parts[1], let dtype = Self.storages[type],
      case .string(let key) = parts[2]
    else { throw fail("has a persistent id that is not a tensor storage") }
    return .storage(key: key, dtype: dtype)
  }

  func reduce(_ callable: Value, _ args: Value) throws(ModelError) -> Value {
    guard case .global(let name) = callable, case .tuple(let a) = args else {
      throw fail("calls something that is not a known global")
    }
    switch name {
    case "collections.OrderedDict":
      return .dict([])
    case "torch._utils._rebuild_tensor_v2":
      // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
      guard a.count >= 4, case .storage(let key, let dtype) = a[0], case .int(let offset) = a[1],
        let shape = ints(a[2]), let stride = ints(a[3]), shape.count == stride.count,
        shape.allSatisfy({ $0 >= 0 && $0 < 1 << 40 })
      else { throw fail("rebuilds a tensor from arguments that are not a storage and its shape") }
      return .tensor(
        Tensor(storage: key, dtype: dtype, offset: offset, shape: shape, stride: stride))
    case "torch._utils._rebuild_parameter":
      guard let first = a.first, case .tensor = first else {
        throw fail("rebuilds a parameter of no tensor")
      }
      return first
    default:
      throw fail("calls \(name)")
    }
  }

  func ints(_ v: Value) -> [Int]? {
    guard case .tuple(let items) = v else { return nil }
    var out: [Int] = []
    for item in items {
      guard case .int(let i) = item else { return nil }
      out.append(i)
    }
    return out
  }

  mutating func setItems(_ items: [Value]) throws(ModelError) {
    guard items.count % 2 == 0, case .dict(var d) = try pop() else {
      throw fail("sets items of something that is not a dict")
    }
    for i in stride(from: 0, to: items.count, by: 2) { d.append((items[i], items[i + 1])) }
    stack.append(try nested(.dict(d)))
  }

  mutating func append(_ items: [Value]) throws(ModelError) {
    guard case .list(var l) = try pop() else {
      throw fail("appends to something that is not a list")
    }
    l += items
    stack.append(try nested(.list(l)))
  }
}
