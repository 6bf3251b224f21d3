import MergeModel

/// A command-line argument declared once: its name, its help, and how the command line becomes
/// a value of its type.
///
/// A command declares each of its arguments as a static `Option`, lists their definitions in
/// its configuration, and reads them with ``ParsedArguments/value(_:)``: the name is written in
/// one place, and a value is read only through the option that declares it.
struct Option<Value: Sendable>: Sendable {
  /// What the parser and the help show.
  let definition: ArgumentDefinition
  private let read: @Sendable (ParsedArguments) throws(UsageError) -> Value

  private init(
    _ definition: ArgumentDefinition,
    read: @escaping @Sendable (ParsedArguments) throws(UsageError) -> Value
  ) {
    self.definition = definition
    self.read = read
  }

  /// The value on `arguments`.
  func value(in arguments: ParsedArguments) throws(UsageError) -> Value { try read(arguments) }

  /// This option with `value` when it is not given.
  func defaulted<Wrapped>(to value: @autoclosure @escaping @Sendable () -> Wrapped)
    -> Option<Wrapped> where Value == Wrapped?
  {
    let read = self.read
    return Option<Wrapped>(definition) { arguments throws(UsageError) in
      try read(arguments) ?? value()
    }
  }
}

extension Option where Value == [String] {
  /// A positional argument given one or more times (`<vector>...`).
  static func positionalList(_ name: String, help: String) -> Self {
    Self(.positionalList(name, help: help)) { $0.lists[name] ?? [] }
  }
}

extension Option where Value == String {
  /// A positional argument that must be given.
  static func positional(_ name: String, help: String) -> Self {
    Self(.positional(name, help: help)) { $0.positionals[name] ?? "" }
  }
}

extension Option where Value == String? {
  /// A positional argument that may be left out.
  static func optionalPositional(_ name: String, help: String) -> Self {
    Self(.positional(name, help: help, optional: true)) { $0.positionals[name] }
  }

  /// `--name <value>`, as text.
  static func option(_ name: String, value: String, help: String) -> Self {
    Self(.option(name, value: value, help: help)) { $0.options[name] }
  }
}

extension Option where Value == Bool {
  /// `--name` (and `-c` with a short name).
  static func flag(_ name: String, short: Character? = nil, help: String) -> Self {
    Self(.flag(name, short: short, help: help)) { $0.flags.contains(name) }
  }
}

extension Option {
  /// `--name <value>`, converted by `parse` (nil: the value is invalid, a usage error, with
  /// `expected` saying what is valid).
  static func option<Parsed>(
    _ name: String, value: String, help: String, expected: String? = nil,
    parse: @escaping @Sendable (String) -> Parsed?
  ) -> Self where Value == Parsed? {
    let definition = ArgumentDefinition.option(name, value: value, help: help)
    return Self(definition) { arguments throws(UsageError) in
      guard let text = arguments.options[name] else { return nil }
      guard let parsed = parse(text) else {
        throw UsageError(
          message: "The value '\(text)' is invalid for '\(definition.synopsis)'"
            + (expected.map { "; \($0)" } ?? ""),
          helpLine: nil)
      }
      return parsed
    }
  }
}

extension Option where Value == Double? {
  /// `--name <value>`: a share, in (0, 1].
  static func share(_ name: String, value: String, help: String) -> Self {
    option(
      name, value: value, help: help, expected: "a number in (0, 1]",
      parse: { Double($0).flatMap { $0 > 0 && $0 <= 1 ? $0 : nil } })
  }
}

extension Option where Value == DType? {
  /// `--name <dtype>`: a dtype as recipes name them.
  static func dtype(_ name: String, help: String) -> Self {
    option(
      name, value: "dtype", help: help, expected: "one of bfloat16, float16, float32, float64",
      parse: { DType(recipeName: $0) })
  }
}

extension ParsedArguments {
  /// The value of `option` on this command line.
  func value<Value>(_ option: Option<Value>) throws(UsageError) -> Value {
    try option.value(in: self)
  }
}
