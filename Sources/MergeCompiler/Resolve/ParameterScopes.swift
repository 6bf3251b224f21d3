import MergeRecipe

/// The parameter tables that can set a parameter for one input of one tensor, and the one
/// rule of precedence between them: the model's own table over its slice's, the slice's over
/// its module's, the module's over the recipe's (mergekit 0.1.5's `resolve_parameter`).
///
/// A shared parameter (one value for the whole tensor) is never read from a model's own table:
/// mergekit ignores it there, and the checker warns.
public struct ParameterScopes: Sendable {
  /// The input model's own `parameters`.
  public var model: ParameterTable?
  /// The slice's `parameters`.
  public var slice: ParameterTable?
  /// The module's `parameters`.
  public var module: ParameterTable?
  /// The recipe's (stage's) top-level `parameters`.
  public var recipe: ParameterTable?

  /// The scopes of an input.
  public init(
    model: ParameterTable? = nil, slice: ParameterTable? = nil, module: ParameterTable? = nil,
    recipe: ParameterTable?
  ) {
    self.model = model
    self.slice = slice
    self.module = module
    self.recipe = recipe
  }

  /// The tables searched for a parameter of `scope`, most specific first.
  public func tables(for scope: ParameterScope) -> [ParameterTable] {
    let chain = scope == .shared ? [slice, module, recipe] : [model, slice, module, recipe]
    return chain.compactMap { $0 }
  }

  /// The setting of `name` in the most specific table of `scope` that has one (for the
  /// checker, which looks for a setting rather than evaluating it).
  public func setting(_ name: String, scope: ParameterScope) -> ParameterSetting? {
    tables(for: scope).lazy.compactMap { $0[name] }.first
  }
}
